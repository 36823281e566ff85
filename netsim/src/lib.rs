//! A user-space UDP link emulator for tests, benchmarks and examples.
//!
//! [`Link::start`] puts an emulated network link in front of a UDP server on
//! the local machine (where `tc netem` is not available, or not wanted). The
//! client sends to [`Link::addr`] instead of the server; the link forwards
//! each datagram to the server after shaping it, and shapes the server's
//! replies on their way back to the client. Each direction has its own
//! [`Shape`] and its own [`LinkStats`].
//!
//! # Model
//!
//! Each direction is a bottleneck followed by a delay line:
//!
//! 1. **Loss.** A datagram that arrives is dropped at random with probability
//!    [`Shape::loss`] (counted in [`LinkStats::dropped_loss`]).
//! 2. **Drop-tail queue.** A datagram that would make the bytes waiting for
//!    serialization (queued, or being serialized) exceed
//!    [`Shape::queue_bytes`] is dropped (counted in
//!    [`LinkStats::dropped_queue`]). With an unlimited rate nothing waits and
//!    this check does not apply.
//! 3. **Serialization.** Datagrams leave the queue in FIFO order. A datagram
//!    of `len` bytes whose serialization starts at `s` (its arrival, or the
//!    previous datagram's departure if that is later) departs at
//!    `s + len * 8 / rate`, where `rate` is the rate in force at `s`: the
//!    initial [`Shape::rate_bps`], then the [`Shape::schedule`] entries and
//!    [`Link::set_rate`] calls, the latest one that took effect winning. Only
//!    UDP payload bytes are counted.
//! 4. **Propagation.** A datagram is delivered at its departure plus
//!    [`Shape::delay`] plus a uniform random sample in `[0, jitter]`, but
//!    never before the previous datagram: the link does not reorder.
//!
//! The emulator keeps its own virtual schedule: each departure is computed
//! from the previous one, not from when the task happened to wake up. A
//! direction is one task that waits for either the next datagram or the next
//! due event and, when it wakes, handles every event whose time has passed.
//! Timer granularity (about a millisecond) therefore moves individual
//! datagrams slightly but does not cap or skew the rate. Because the tokio
//! timer always fires late (it rounds deadlines up to the next millisecond),
//! the task wakes 1 ms before an event and handles the events due within
//! that 1 ms: a datagram may leave up to 1 ms early or a little late, so
//! delays are right on average instead of always about 1 ms too long. An
//! idle link waits on its sockets only.
//!
//! Loss and jitter draw from a random generator seeded with [`Shape::seed`],
//! so a run is reproducible for a given seed and sequence of arrivals.
//!
//! # Addresses
//!
//! The client-facing socket is bound to the loopback address of the server's
//! family (`127.0.0.1` or `::1`) on an ephemeral port. The last source address
//! seen on it is "the client": the server's datagrams are sent there (so one
//! client at a time). The server-facing socket is connected to the server, so
//! the server sees every client datagram as coming from that one socket.
//!
//! # Bounds
//!
//! Memory is bounded: the queue by [`Shape::queue_bytes`], and everything a
//! direction holds (queue and delay line) by 64 MiB; datagrams beyond that
//! are counted as queue drops. Errors sending a datagram (`ENOBUFS`, a refused
//! port reported by ICMP, no client yet) are counted in
//! [`LinkStats::send_errors`] and the link goes on.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use moq_netsim::{Link, Shape};
//!
//! let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! // 10 Mbit/s each way, 20 ms one way (40 ms RTT), 1 % loss upstream.
//! let up = Shape::new(10_000_000, Duration::from_millis(20)).with_loss(0.01);
//! let down = Shape::new(10_000_000, Duration::from_millis(20));
//! let link = Link::start(server.local_addr()?, up, down).await?;
//! let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! client.send_to(b"hello", link.addr()).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Receive buffer size: the largest UDP datagram fits.
const MAX_DATAGRAM: usize = 64 * 1024;

/// The smallest default queue of [`Shape::new`].
const MIN_DEFAULT_QUEUE: usize = 64 * 1024;

/// Everything one direction may hold (queue plus delay line), counting a
/// per-datagram overhead so that tiny datagrams are bounded too.
const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

/// Bookkeeping overhead charged per held datagram against [`MAX_HELD_BYTES`].
const PER_DATAGRAM_OVERHEAD: usize = 64;

/// How early the task wakes before an event, and how far ahead of the clock
/// it handles events. The tokio timer rounds deadlines up to the next
/// millisecond tick and the wakeup adds a little more, so waking this much
/// early centers the timing error on zero instead of always being late.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Requested kernel buffer size of the link's sockets, so a burst is not
/// dropped by the kernel before the emulator reads it (best effort: the
/// kernel may cap it).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// How one direction of the link behaves.
///
/// See the [crate documentation](crate) for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Bottleneck rate in bits per second, counting UDP payload bytes;
    /// 0 means unlimited.
    pub rate_bps: u64,
    /// One-way propagation delay, added after serialization.
    pub delay: Duration,
    /// Each datagram gets an extra uniform random delay in `[0, jitter]`.
    /// Datagrams are never reordered: a delivery time is raised to the
    /// previous datagram's if it would be earlier.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is dropped at random on
    /// arrival.
    pub loss: f64,
    /// Capacity of the bottleneck queue in bytes (drop-tail): a datagram that
    /// would make the bytes waiting for serialization (including the one
    /// being serialized) exceed this is dropped.
    pub queue_bytes: usize,
    /// Rate changes: at each offset from the link's start, the rate becomes
    /// the value (bits per second, 0 = unlimited). [`Link::start`] sorts it
    /// by offset.
    pub schedule: Vec<(Duration, u64)>,
    /// Seed of the random generator for loss and jitter.
    pub seed: u64,
}

impl Shape {
    /// A link of `rate_bps` (0 = unlimited) and one-way `delay`, without
    /// jitter, loss or schedule, with seed 1 and a queue of one
    /// bandwidth-delay product (at a round trip of twice `delay`), at least
    /// 64 KiB.
    pub fn new(rate_bps: u64, delay: Duration) -> Self {
        let rtt_nanos = delay.as_nanos().saturating_mul(2);
        let bdp = u128::from(rate_bps).saturating_mul(rtt_nanos) / 8_000_000_000;
        let bdp = usize::try_from(bdp).unwrap_or(usize::MAX);
        Self {
            rate_bps,
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            queue_bytes: bdp.max(MIN_DEFAULT_QUEUE),
            schedule: Vec::new(),
            seed: 1,
        }
    }

    /// Sets the jitter: each datagram gets an extra uniform random delay in
    /// `[0, jitter]` (without reordering).
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the random loss probability, clamped to `[0, 1]` (NaN is 0).
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = clamp_probability(loss);
        self
    }

    /// Sets the drop-tail queue capacity in bytes.
    pub fn with_queue_bytes(mut self, queue_bytes: usize) -> Self {
        self.queue_bytes = queue_bytes;
        self
    }

    /// Sets the rate schedule: `(offset from the link's start, rate_bps)`
    /// pairs, in any order (they are sorted by offset).
    pub fn with_schedule(mut self, mut schedule: Vec<(Duration, u64)>) -> Self {
        schedule.sort_by_key(|&(at, _)| at);
        self.schedule = schedule;
        self
    }

    /// Sets the seed of the random generator for loss and jitter.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Default for Shape {
    /// A transparent link: unlimited rate, no delay, no loss.
    fn default() -> Self {
        Self::new(0, Duration::ZERO)
    }
}

/// Counters of one direction of a [`Link`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams delivered (handed to the outgoing socket without error).
    pub forwarded_packets: u64,
    /// Payload bytes of the delivered datagrams.
    pub forwarded_bytes: u64,
    /// Datagrams dropped at random ([`Shape::loss`]).
    pub dropped_loss: u64,
    /// Datagrams dropped because the queue was full ([`Shape::queue_bytes`]),
    /// or the direction already held its 64 MiB maximum.
    pub dropped_queue: u64,
    /// Datagrams that reached the end of the link but could not be sent: a
    /// socket error, or (towards the client) no client seen yet.
    pub send_errors: u64,
}

/// A running emulated link in front of a UDP server. Dropping it stops the
/// link and closes its sockets.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    up: Arc<Direction>,
    down: Arc<Direction>,
    tasks: [JoinHandle<()>; 2],
}

impl Link {
    /// Starts a link in front of the UDP server at `server`. Clients send to
    /// [`addr`](Self::addr).
    ///
    /// `up` shapes client→server datagrams, `down` shapes server→client
    /// datagrams. Schedule offsets count from this call. Must be called
    /// within a tokio runtime with the time and IO drivers enabled; the link
    /// runs as two tasks on it.
    pub async fn start(server: SocketAddr, up: Shape, down: Shape) -> io::Result<Link> {
        let loopback = match server.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        // An unspecified server address means this host.
        let server = if server.ip().is_unspecified() {
            SocketAddr::new(loopback, server.port())
        } else {
            server
        };
        let server_bind = if server.ip().is_loopback() {
            loopback
        } else {
            match server.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            }
        };

        let client_socket = Arc::new(bind(SocketAddr::new(loopback, 0))?);
        let server_socket = Arc::new(bind(SocketAddr::new(server_bind, 0))?);
        server_socket.connect(server).await?;
        let addr = client_socket.local_addr()?;

        let start = Instant::now();
        let client = Arc::new(Mutex::new(None));
        let up_dir = Arc::new(Direction::default());
        let down_dir = Arc::new(Direction::default());

        let up_task = tokio::spawn(Shaper::new(up, start, up_dir.clone()).run(
            Input::FromClient(client_socket.clone(), client.clone()),
            Output::ToServer(server_socket.clone()),
        ));
        let down_task = tokio::spawn(Shaper::new(down, start, down_dir.clone()).run(
            Input::FromServer(server_socket),
            Output::ToClient(client_socket, client),
        ));

        Ok(Link {
            addr,
            up: up_dir,
            down: down_dir,
            tasks: [up_task, down_task],
        })
    }

    /// The client-facing address: clients send here instead of to the
    /// server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters of the client→server direction.
    pub fn up_stats(&self) -> LinkStats {
        self.up.stats()
    }

    /// Counters of the server→client direction.
    pub fn down_stats(&self) -> LinkStats {
        self.down.stats()
    }

    /// Changes the rate of either direction now (bits per second, 0 =
    /// unlimited; `None` leaves that direction alone). It applies to
    /// datagrams whose serialization starts from now on, until the next
    /// schedule entry or call; a datagram being serialized keeps its rate.
    pub fn set_rate(&self, up_bps: Option<u64>, down_bps: Option<u64>) {
        let now = Instant::now();
        if let Some(rate) = up_bps {
            *lock(&self.up.manual_rate) = Some((now, rate));
        }
        if let Some(rate) = down_bps {
            *lock(&self.down.manual_rate) = Some((now, rate));
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Clamps a probability to `[0, 1]`; NaN becomes 0.
fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Locks a mutex, ignoring poisoning (the data are plain values).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `t + d`, saturating far in the future instead of overflowing.
fn add(t: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// Time to serialize `len` bytes at `rate_bps` (0 = unlimited).
fn serialization_time(len: usize, rate_bps: u64) -> Duration {
    if rate_bps == 0 {
        return Duration::ZERO;
    }
    let nanos = (len as u128).saturating_mul(8_000_000_000) / u128::from(rate_bps);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Binds a non-blocking UDP socket with enlarged kernel buffers.
fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Best effort, as are the buffer sizes.
        let _ = socket.set_only_v6(true);
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// State of one direction shared between the [`Link`] and its task.
#[derive(Debug, Default)]
struct Direction {
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    send_errors: AtomicU64,
    /// The latest [`Link::set_rate`]: when, and the rate.
    manual_rate: Mutex<Option<(Instant, u64)>>,
}

impl Direction {
    fn stats(&self) -> LinkStats {
        LinkStats {
            forwarded_packets: self.forwarded_packets.load(Ordering::Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            dropped_loss: self.dropped_loss.load(Ordering::Relaxed),
            dropped_queue: self.dropped_queue.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Where a direction reads datagrams.
enum Input {
    /// The client-facing socket; records the latest source as the client.
    FromClient(Arc<UdpSocket>, Arc<Mutex<Option<SocketAddr>>>),
    /// The server-facing (connected) socket.
    FromServer(Arc<UdpSocket>),
}

impl Input {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::FromClient(socket, client) => {
                let (n, from) = socket.recv_from(buf).await?;
                let mut client = lock(client);
                if *client != Some(from) {
                    *client = Some(from);
                }
                Ok(n)
            }
            Input::FromServer(socket) => socket.recv(buf).await,
        }
    }
}

/// Where a direction delivers datagrams.
enum Output {
    /// The server-facing (connected) socket.
    ToServer(Arc<UdpSocket>),
    /// The client-facing socket, to the latest client seen.
    ToClient(Arc<UdpSocket>, Arc<Mutex<Option<SocketAddr>>>),
}

impl Output {
    async fn send(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::ToServer(socket) => socket.send(data).await.map(drop),
            Output::ToClient(socket, client) => {
                let to = *lock(client);
                match to {
                    Some(to) => socket.send_to(data, to).await.map(drop),
                    None => Err(io::Error::new(io::ErrorKind::NotConnected, "no client yet")),
                }
            }
        }
    }
}

/// The emulator of one direction, owned by its task.
struct Shaper {
    shared: Arc<Direction>,
    base_rate: u64,
    /// Absolute times of the rate changes, sorted.
    schedule: Vec<(Instant, u64)>,
    delay: Duration,
    jitter_nanos: u64,
    loss: f64,
    queue_bytes: usize,
    rng: fastrand::Rng,

    /// Datagrams waiting for serialization (not started).
    waiting: VecDeque<Vec<u8>>,
    /// The datagram being serialized and its departure time.
    serializing: Option<(Instant, Vec<u8>)>,
    /// Payload bytes of `waiting` plus `serializing`.
    queued: usize,
    /// Departed datagrams and their delivery times (non-decreasing).
    delay_line: VecDeque<(Instant, Vec<u8>)>,
    /// The latest departure time assigned.
    last_departure: Option<Instant>,
    /// The latest delivery time assigned.
    last_delivery: Option<Instant>,
    /// Bytes held in all of the above, with the per-datagram overhead.
    held: usize,
}

impl Shaper {
    fn new(shape: Shape, start: Instant, shared: Arc<Direction>) -> Self {
        let mut schedule: Vec<(Instant, u64)> = shape
            .schedule
            .iter()
            .map(|&(offset, rate)| (add(start, offset), rate))
            .collect();
        schedule.sort_by_key(|&(at, _)| at);
        Self {
            shared,
            base_rate: shape.rate_bps,
            schedule,
            delay: shape.delay,
            jitter_nanos: u64::try_from(shape.jitter.as_nanos()).unwrap_or(u64::MAX),
            loss: clamp_probability(shape.loss),
            queue_bytes: shape.queue_bytes,
            rng: fastrand::Rng::with_seed(shape.seed),
            waiting: VecDeque::new(),
            serializing: None,
            queued: 0,
            delay_line: VecDeque::new(),
            last_departure: None,
            last_delivery: None,
            held: 0,
        }
    }

    /// The rate in force at `t`: the latest of the initial rate, the
    /// schedule entries and the manual setting that took effect by `t`.
    fn rate_at(&self, t: Instant) -> u64 {
        let mut rate = self.base_rate;
        let mut since = None;
        let passed = self.schedule.partition_point(|&(at, _)| at <= t);
        if let Some(&(at, r)) = passed.checked_sub(1).and_then(|i| self.schedule.get(i)) {
            rate = r;
            since = Some(at);
        }
        if let Some((at, r)) = *lock(&self.shared.manual_rate)
            && at <= t
            && since.is_none_or(|since| at >= since)
        {
            rate = r;
        }
        rate
    }

    /// The earliest pending event: the current departure or the next
    /// delivery.
    fn next_event(&self) -> Option<Instant> {
        let departure = self.serializing.as_ref().map(|(at, _)| *at);
        let delivery = self.delay_line.front().map(|(at, _)| *at);
        match (departure, delivery) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every event due by `now`: departures (each starting the next
    /// serialization at its own departure time), then deliveries.
    async fn advance(&mut self, now: Instant, output: &Output) {
        while let Some((departure, _)) = &self.serializing {
            let departure = *departure;
            if departure > now {
                break;
            }
            let Some((_, data)) = self.serializing.take() else {
                break;
            };
            self.queued -= data.len();
            self.depart(departure, data);
            if let Some(next) = self.waiting.pop_front() {
                let done = add(
                    departure,
                    serialization_time(next.len(), self.rate_at(departure)),
                );
                self.last_departure = Some(done);
                self.serializing = Some((done, next));
            }
        }
        while self.delay_line.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, data)) = self.delay_line.pop_front() else {
                break;
            };
            self.held -= data.len() + PER_DATAGRAM_OVERHEAD;
            match output.send(&data).await {
                Ok(()) => {
                    Direction::count(&self.shared.forwarded_packets, 1);
                    Direction::count(&self.shared.forwarded_bytes, data.len() as u64);
                }
                Err(_) => Direction::count(&self.shared.send_errors, 1),
            }
        }
    }

    /// Puts a datagram that departed at `departure` on the delay line.
    fn depart(&mut self, departure: Instant, data: Vec<u8>) {
        let jitter = if self.jitter_nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.u64(0..=self.jitter_nanos))
        };
        let mut at = add(add(departure, self.delay), jitter);
        if let Some(last) = self.last_delivery {
            at = at.max(last);
        }
        self.last_delivery = Some(at);
        self.delay_line.push_back((at, data));
    }

    /// A datagram arrived at `now` (after [`advance`](Self::advance) to
    /// `now`).
    fn arrive(&mut self, now: Instant, data: &[u8]) {
        if self.loss > 0.0 && self.rng.f64() < self.loss {
            Direction::count(&self.shared.dropped_loss, 1);
            return;
        }
        let len = data.len();
        let rate = self.rate_at(now);
        let over_queue = rate != 0 && self.queued + len > self.queue_bytes;
        let over_memory = self.held + len + PER_DATAGRAM_OVERHEAD > MAX_HELD_BYTES;
        if over_queue || over_memory {
            Direction::count(&self.shared.dropped_queue, 1);
            return;
        }
        self.queued += len;
        self.held += len + PER_DATAGRAM_OVERHEAD;
        if self.serializing.is_none() {
            // The previous departure may be a little ahead of `now` (see
            // TIMER_SLACK).
            let start = self.last_departure.map_or(now, |last| last.max(now));
            let done = add(start, serialization_time(len, self.rate_at(start)));
            self.last_departure = Some(done);
            self.serializing = Some((done, data.to_vec()));
        } else {
            self.waiting.push_back(data.to_vec());
        }
    }

    /// The direction's task: waits for a datagram or the next due event,
    /// whichever comes first, and handles everything due.
    async fn run(mut self, input: Input, output: Output) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            self.advance(add(Instant::now(), TIMER_SLACK), &output)
                .await;
            let wake = self
                .next_event()
                .map(|at| at.checked_sub(TIMER_SLACK).unwrap_or(at));
            let received = tokio::select! {
                received = input.recv(&mut buf) => Some(received),
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => None,
            };
            match received {
                None => {}
                Some(Ok(n)) => {
                    let now = Instant::now();
                    self.advance(add(now, TIMER_SLACK), &output).await;
                    self.arrive(now, buf.get(..n).unwrap_or(&[]));
                }
                // A refused or reset port (ICMP) is reported once per
                // datagram: just go on.
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) => {}
                // Anything else: go on too, but do not spin on a socket
                // that keeps failing.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_queue_is_one_bdp_at_least_64_kib() {
        // 100 Mbit/s, 20 ms one way: 100e6 / 8 * 0.040 = 500 000 bytes.
        assert_eq!(
            Shape::new(100_000_000, Duration::from_millis(20)).queue_bytes,
            500_000
        );
        assert_eq!(
            Shape::new(1_000_000, Duration::from_millis(1)).queue_bytes,
            64 * 1024
        );
        assert_eq!(Shape::new(0, Duration::from_secs(1)).queue_bytes, 64 * 1024);
        let huge = Shape::new(u64::MAX, Duration::MAX);
        assert_eq!(huge.queue_bytes, usize::MAX);
        assert_eq!(huge.seed, 1);
    }

    #[test]
    fn setters() {
        let s = Shape::new(1, Duration::ZERO)
            .with_loss(2.0)
            .with_jitter(Duration::from_millis(3))
            .with_queue_bytes(7)
            .with_seed(9)
            .with_schedule(vec![
                (Duration::from_secs(2), 5),
                (Duration::from_secs(1), 4),
            ]);
        assert_eq!(s.loss, 1.0);
        assert_eq!(s.jitter, Duration::from_millis(3));
        assert_eq!(s.queue_bytes, 7);
        assert_eq!(s.seed, 9);
        assert_eq!(
            s.schedule,
            vec![(Duration::from_secs(1), 4), (Duration::from_secs(2), 5)]
        );
        assert_eq!(Shape::default().with_loss(f64::NAN).loss, 0.0);
        assert_eq!(Shape::default().with_loss(-1.0).loss, 0.0);
    }

    #[test]
    fn serialization_times() {
        assert_eq!(
            serialization_time(1200, 10_000_000),
            Duration::from_micros(960)
        );
        assert_eq!(serialization_time(1200, 0), Duration::ZERO);
        assert_eq!(serialization_time(65_536, 1), Duration::from_secs(524_288));
    }

    #[tokio::test]
    async fn rate_at_follows_schedule_and_manual_setting() {
        let start = Instant::now();
        let shape = Shape::new(8, Duration::ZERO).with_schedule(vec![
            (Duration::from_secs(1), 2),
            (Duration::from_secs(3), 5),
        ]);
        let dir = Arc::new(Direction::default());
        let shaper = Shaper::new(shape, start, dir.clone());
        assert_eq!(shaper.rate_at(start), 8);
        assert_eq!(shaper.rate_at(start + Duration::from_secs(1)), 2);
        *lock(&dir.manual_rate) = Some((start + Duration::from_secs(2), 7));
        assert_eq!(shaper.rate_at(start + Duration::from_millis(1500)), 2);
        assert_eq!(shaper.rate_at(start + Duration::from_secs(2)), 7);
        assert_eq!(shaper.rate_at(start + Duration::from_secs(3)), 5);
    }
}
