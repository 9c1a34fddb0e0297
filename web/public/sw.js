// Service worker: shows Web Push notifications (the payload is JSON
// {kind, title, body, chatId, messageId}) and focuses the app on click.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = { title: "Chat", body: "" }; }
  event.waitUntil(self.registration.showNotification(data.title || "Chat", {
    body: data.body || "",
    tag: data.chatId || undefined,
    data: { chatId: data.chatId || null },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    if (windows.length) return windows[0].focus();
    return self.clients.openWindow("/");
  })());
});
