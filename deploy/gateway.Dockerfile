# The gateway: nginx with the web client built in (TypeScript compiled in a
# Node stage; nothing is fetched at run time).
FROM node:20-alpine AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/tsconfig.json ./
COPY web/src ./src
COPY web/public ./public
RUN npm run build

FROM nginx:1.27-alpine
COPY deploy/nginx.compose.conf /etc/nginx/nginx.conf
COPY deploy/security-headers.conf /etc/nginx/security-headers.conf
COPY deploy/api-headers.conf /etc/nginx/api-headers.conf
COPY --from=web /web/public /srv/web
