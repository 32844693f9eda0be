//! Writers that learn of their deliveries from the producer's context, not
//! from a future per record: the choice of writers whose records number in
//! the millions (a future costs an allocation, a channel and a wake-up per
//! record, a profile's largest item after compression).
//!
//! [`WriterContext`] keeps the worst failed delivery and, when asked, the
//! last offset per partition that each topic's records landed at;
//! [`hand_over`] gives librdkafka a record and counts it, so
//! [`WriterContext::wait_reported`] knows when every report was seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::LogContext;
use super::refusal::{self, Refused};

/// Where a writer's records landed: the last offset per topic and partition.
pub type Landed = HashMap<(String, i32), i64>;

/// The context of [`ThreadedProducer`] writers: [`LogContext`]'s logging,
/// the worst delivery failure since it was last taken, and (for writers
/// that need it) where the records landed.
#[derive(Debug, Default)]
pub struct WriterContext {
    refused: Mutex<Option<Refused>>,
    /// Topic → partition → last offset; `None` when nobody asks.
    landed: Option<Mutex<HashMap<String, HashMap<i32, i64>>>>,
    /// Records handed over ([`hand_over`]: every send of a tracking
    /// writer must go through it) whose delivery report has not run yet.
    /// librdkafka counts a record out only once its report event is
    /// destroyed, after these callbacks ran, so after a flush this is
    /// zero; [`Self::wait_reported`] checks that rather than trusting it,
    /// since [`Self::take_landed`] must not miss a partition.
    unreported: AtomicI64,
}

impl WriterContext {
    /// A context that also keeps where each topic's records landed
    /// ([`Self::take_landed`]).
    pub fn tracking_offsets() -> Self {
        Self {
            landed: Some(Mutex::default()),
            ..Self::default()
        }
    }

    /// The worst failure since the last call (a permanent one first).
    pub fn take_refusal(&self) -> Option<Refused> {
        lock(&self.refused).take()
    }

    /// The last offset per topic and partition of the records delivered
    /// since the last call (empty unless [`Self::tracking_offsets`]).
    pub fn take_landed(&self) -> Landed {
        let Some(landed) = &self.landed else {
            return Landed::new();
        };
        let mut landed = lock(landed);
        let mut taken = Landed::new();
        for (topic, partitions) in landed.iter_mut() {
            taken.extend(partitions.drain().map(|(p, at)| ((topic.clone(), p), at)));
        }
        taken
    }

    /// Blocks until the delivery report of every record handed over has
    /// run, or `patience` passes (false). Call it once a flush or a commit
    /// returned: then it waits microseconds, if at all.
    pub fn wait_reported(&self, patience: Duration) -> bool {
        let started = Instant::now();
        while self.unreported.load(Ordering::Acquire) > 0 {
            if started.elapsed() > patience {
                return false;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    }

    fn reported(&self, result: &DeliveryResult<'_>) {
        match result {
            Ok(message) => {
                if let Some(landed) = &self.landed {
                    let mut landed = lock(landed);
                    let partitions = match landed.get_mut(message.topic()) {
                        Some(partitions) => partitions,
                        None => landed.entry(message.topic().to_owned()).or_default(),
                    };
                    let at = partitions.entry(message.partition()).or_insert(-1);
                    *at = (*at).max(message.offset());
                }
            }
            Err((error, message)) => {
                let refused = Refused {
                    topic: message.topic().to_owned(),
                    error: error.clone(),
                };
                let mut slot = lock(&self.refused);
                *slot = refusal::worst(slot.take().into_iter().chain([refused]));
            }
        }
        self.unreported.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A poisoned lock still holds good data here: every writer of it leaves
/// it whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientContext for WriterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LogContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LogContext.error(error, reason);
    }
}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: Self::DeliveryOpaque) {
        self.reported(result);
    }
}

/// Gives one record to librdkafka, waiting while its local queue is full;
/// an error is the record's refusal at hand-over (its delivery report,
/// later, is the context's business).
pub async fn hand_over<K, P>(
    producer: &ThreadedProducer<WriterContext>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized + Sync,
    P: ToBytes + ?Sized + Sync,
{
    let unreported = &producer.context().unreported;
    loop {
        // Counted first: the report may run before `send` returns.
        unreported.fetch_add(1, Ordering::AcqRel);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((error, back)) => {
                unreported.fetch_sub(1, Ordering::AcqRel);
                if !matches!(
                    error,
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                ) {
                    return Err(error);
                }
                record = back;
                // Let librdkafka drain its queue.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Why a transactional write failed, put as the caller must act on it.
#[derive(Debug)]
pub enum Failure {
    /// A newer instance (or the coordinator) ended this producer's epoch:
    /// stop writing with it.
    Fenced,
    /// A record was refused (the worst of several): names its topic, and
    /// whether retrying can help.
    Refused(Refused),
    /// Anything else: the transaction's own error.
    Other(KafkaError),
}

/// Names the cause of a failed hand-over or transactional call. Once one
/// record fails, librdkafka refuses every later send and call with a
/// state error that hides it, so this first lets what is in flight report
/// (waiting at most `patience`), then prefers fencing (in the error, in
/// the producer's fatal error, or in a delivery), then the worst refused
/// record, then `error` itself. Blocks: call it off the async threads.
pub fn explain_failure(
    producer: &ThreadedProducer<WriterContext>,
    error: KafkaError,
    patience: Duration,
) -> Failure {
    let _ = producer.flush(rdkafka::util::Timeout::After(patience));
    let refused = producer.context().take_refusal();
    let fatal_fenced = producer
        .client()
        .fatal_error()
        .is_some_and(|(code, reason)| {
            super::is_fenced(&KafkaError::MessageProduction(code))
                || reason.to_lowercase().contains("fenced")
        });
    if super::is_fenced(&error)
        || fatal_fenced
        || refused.as_ref().is_some_and(|r| super::is_fenced(&r.error))
    {
        return Failure::Fenced;
    }
    match refused {
        Some(refused) => Failure::Refused(refused),
        None => Failure::Other(error),
    }
}

/// Waits until librdkafka holds nothing of this writer's (every record
/// handed over delivered or failed, and its report run), or `patience`
/// passes (false). Call it before a flush or a commit: rust-rdkafka's
/// flush polls the report queue itself, up to 100 ms at a time, and with
/// the polling thread emptying that queue first it sits out those 100 ms
/// in full, once per batch (the runner ran at 58% of its rate with it).
pub async fn delivered(producer: &ThreadedProducer<WriterContext>, patience: Duration) -> bool {
    let started = Instant::now();
    loop {
        if producer.in_flight_count() == 0
            && producer.context().unreported.load(Ordering::Acquire) <= 0
        {
            return true;
        }
        if started.elapsed() > patience {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
