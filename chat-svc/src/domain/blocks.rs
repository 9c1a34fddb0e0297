//! Blocking and group privacy (api.md, "Blocking and privacy"): the use
//! cases behind `/api/chat/blocks` and `/api/chat/privacy`. The checks that
//! enforce them live with the operations they guard (service.rs).

use super::service::{members_generation, ChatService};
use super::views::{unknown_profile, ProfileView};
use crate::storage::blocks::GroupAdds;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("a user cannot block themself")]
    SelfBlock,
    #[error("no such user")]
    UnknownUser,
    #[error("storage")]
    Store(#[from] mongodb::error::Error),
}

impl ChatService {
    /// Idempotent. Takes effect on the next request on every instance: the
    /// pair's 1:1 chat membership (what a send checks, cached) is invalidated.
    pub async fn block(&self, user: &str, target: &str) -> Result<(), BlockError> {
        if user == target {
            return Err(BlockError::SelfBlock);
        }
        if !self.users.exists(target).await? {
            return Err(BlockError::UnknownUser);
        }
        self.blocks.block(user, target).await?;
        self.pair_changed(user, target).await
    }

    /// Idempotent; unblocking someone never blocked is a no-op.
    pub async fn unblock(&self, user: &str, target: &str) -> Result<(), BlockError> {
        self.blocks.unblock(user, target).await?;
        self.pair_changed(user, target).await
    }

    /// After the block write: whatever cached membership was computed before
    /// it carries an older generation from here on.
    async fn pair_changed(&self, user: &str, target: &str) -> Result<(), BlockError> {
        if let Some(chat_id) = self.chats.direct_id(user, target).await? {
            self.cache.bump(&[members_generation(&chat_id)]).await;
        }
        Ok(())
    }

    /// The profiles of the users `user` blocked, most recent first.
    pub async fn blocked_users(&self, user: &str) -> Result<Vec<ProfileView>, BlockError> {
        let ids = self.blocks.blocked_by(user).await?;
        let profiles = self.users.profiles(&ids).await?;
        Ok(ids
            .iter()
            .map(|id| ProfileView::from(profiles.get(id).unwrap_or(&unknown_profile(id))))
            .collect())
    }

    pub async fn group_adds(&self, user: &str) -> Result<GroupAdds, BlockError> {
        Ok(self.blocks.group_adds(user).await?)
    }

    pub async fn set_group_adds(
        &self,
        user: &str,
        group_adds: GroupAdds,
    ) -> Result<GroupAdds, BlockError> {
        self.blocks.set_group_adds(user, group_adds).await?;
        Ok(group_adds)
    }
}
