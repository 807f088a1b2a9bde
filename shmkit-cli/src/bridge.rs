//! `shmkit bridge out | in`: the command line of the Redis Streams bridge;
//! the work is in the `shmkit-bridge` crate.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use shmkit::ShmType;
use shmkit::queue::{Queue, QueueOptions};
use shmkit_bridge::{BridgeError, Common, InConfig, Msg256, OutConfig, Retry};

/// `shmkit bridge ...`
#[derive(Debug, Subcommand)]
pub enum Bridge {
    /// Forward a local queue's items to a Redis stream (XADD)
    ///
    /// Runs until the queue is closed and drained. Items are marked done in
    /// the local queue once they are in Redis; while Redis is unreachable
    /// nothing more is popped and the queue fills.
    Out {
        #[command(flatten)]
        common: CommonArgs,
        /// Trim the stream to about this many entries (XADD MAXLEN ~)
        #[arg(long, value_name = "N")]
        maxlen: Option<u64>,
        /// Create the queue if missing, with this many slots per producer
        #[arg(long, value_name = "SLOTS")]
        create: Option<usize>,
        /// With --create: the producer limit
        #[arg(long, value_name = "N", default_value_t = 16)]
        producers: usize,
    },
    /// Read a Redis consumer group into a local queue (XREADGROUP), acknowledging
    /// entries once local consumers marked them done
    ///
    /// Runs until the queue is closed. Entries of another element type are
    /// moved to <STREAM>:dead. Pending entries idle for --claim-idle-ms are
    /// taken over (XAUTOCLAIM) and delivered again.
    In {
        #[command(flatten)]
        common: CommonArgs,
        /// The consumer group (created at the stream's start if missing)
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// This bridge's name in the group; keep it across restarts
        /// [default: <hostname>:<queue>]
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
        /// Take over entries pending this long (ms)
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        claim_idle_ms: u64,
        /// Most items between two acknowledgements (an epoch)
        #[arg(long, value_name = "N", default_value_t = 4096)]
        ack_every: usize,
        /// Longest an epoch stays open (ms)
        #[arg(long, value_name = "MS", default_value_t = 50)]
        ack_interval_ms: u64,
        /// Create the queue if missing, with this many slots (the bridge is
        /// its only producer)
        #[arg(long, value_name = "SLOTS")]
        create: Option<usize>,
        /// With --create: the consumer limit
        #[arg(long, value_name = "N", default_value_t = 64)]
        consumers: usize,
    },
}

/// The element type of the local queue (the CLI carries these; a program
/// of your own carries any `ShmType` through the `shmkit-bridge` crate).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ElemType {
    /// u64 items
    U64,
    /// shmkit.Msg256/1: byte messages of up to 252 bytes
    Msg256,
}

/// Arguments both directions take.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The local queue's name (as in /dev/shm)
    #[arg(long, value_name = "NAME")]
    queue: String,
    /// The Redis server
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// The stream's key
    #[arg(long, value_name = "KEY")]
    stream: String,
    /// The local queue's element type
    #[arg(long = "type", value_name = "TYPE", default_value = "u64")]
    ty: ElemType,
    /// Entries per pipelined round trip
    #[arg(long, value_name = "N", default_value_t = 256)]
    batch: usize,
    /// Give up after this many consecutive failed attempts to reach Redis
    /// [default: never]
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// Print forwarded, acked, pending, lag... on stderr every second
    #[arg(long)]
    stats: bool,
}

impl CommonArgs {
    fn common(&self) -> Common {
        let mut c = Common::new(&self.redis, &self.stream);
        c.batch = self.batch.max(1);
        c.retry = Retry {
            max_retries: self.max_retries,
            ..Retry::default()
        };
        c.stats_every = self.stats.then_some(Duration::from_secs(1));
        c
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

fn open<T: ShmType>(name: &str, create: Option<QueueOptions>) -> shmkit::Result<Queue<T>> {
    match create {
        Some(opts) => Queue::open_or_create(name, opts),
        None => Queue::open(name),
    }
}

fn run_typed<T: ShmType>(cmd: &Bridge) -> Result<shmkit_bridge::StatsSnapshot, BridgeError> {
    match cmd {
        Bridge::Out {
            common,
            maxlen,
            create,
            producers,
        } => {
            let opts = create.map(|cap| QueueOptions::new(cap, *producers, 4));
            let mut q = open::<T>(&common.queue, opts)?;
            // The queue outlives the bridge: its producers own it.
            q.keep();
            let cfg = OutConfig {
                common: common.common(),
                maxlen: *maxlen,
            };
            shmkit_bridge::run_out(&q, &cfg)
        }
        Bridge::In {
            common,
            group,
            consumer,
            claim_idle_ms,
            ack_every,
            ack_interval_ms,
            create,
            consumers,
        } => {
            let opts = create.map(|cap| QueueOptions::new(cap, 1, *consumers));
            let mut q = open::<T>(&common.queue, opts)?;
            q.keep();
            let name = consumer
                .clone()
                .unwrap_or_else(|| format!("{}:{}", hostname(), common.queue));
            let mut cfg = InConfig::new(common.common(), group, &name);
            cfg.claim_idle = Duration::from_millis(*claim_idle_ms);
            cfg.ack_every = (*ack_every).max(1);
            cfg.ack_interval = Duration::from_millis(*ack_interval_ms);
            shmkit_bridge::run_in(&q, &cfg)
        }
    }
}

/// Run `shmkit bridge out|in`.
pub fn run(cmd: &Bridge) -> ExitCode {
    let ty = match cmd {
        Bridge::Out { common, .. } | Bridge::In { common, .. } => common.ty,
    };
    let r = match ty {
        ElemType::U64 => run_typed::<u64>(cmd),
        ElemType::Msg256 => run_typed::<Msg256>(cmd),
    };
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmkit bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
