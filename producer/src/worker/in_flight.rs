//! Batches handed to the committer and not yet acknowledged: a worker
//! keeps up to a limit in flight and awaits them in order, so pages are
//! fetched while earlier ones commit.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::committer::CommitError;

/// Batches sent but not yet acknowledged, awaited in order.
pub(super) struct InFlight {
    acks: VecDeque<oneshot::Receiver<Result<(), CommitError>>>,
    limit: usize,
}

impl InFlight {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            acks: VecDeque::new(),
            limit,
        }
    }

    pub(super) async fn push(
        &mut self,
        ack: oneshot::Receiver<Result<(), CommitError>>,
    ) -> Result<(), CommitError> {
        self.acks.push_back(ack);
        while self.acks.len() > self.limit {
            self.pop().await?;
        }
        Ok(())
    }

    async fn pop(&mut self) -> Result<(), CommitError> {
        match self.acks.pop_front() {
            Some(ack) => ack.await.unwrap_or(Err(CommitError::Stopped)),
            None => Ok(()),
        }
    }

    pub(super) async fn drain(&mut self) -> Result<(), CommitError> {
        while !self.acks.is_empty() {
            self.pop().await?;
        }
        Ok(())
    }
}
