//! A session that re-dials: the opt-in reconnect policy of the dialing side.
//!
//! [`Reconnecting`] keeps a session to one URL. When the session ends for any reason but a
//! local close (the server restarted or went away, the path failed, the server sent GOAWAY),
//! it dials again with exponential backoff and jitter, within the [`Reconnect`] limits.
//! What the client publishes is published again on each new session (the dialer's router
//! serves every session); [`ResumingTrack`]s subscribe again and go on from the next group,
//! and [`ResumingAnnouncements`] ask again for announcements. [`Reconnecting::next_event`]
//! tells the application each connect, disconnect and failed attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moq_tokio::code::{self, ErrorCode};
use moq_tokio::error::{CloseReason, EndReason};
use moq_tokio::{Announcement, Announcements, GroupReader, Session, SubscribeParams, TrackReader};
use tokio::sync::{mpsc, watch};

use crate::{DialError, Dialer};

/// How a [`Reconnecting`] session dials again.
///
/// ```
/// use std::time::Duration;
/// use moq_dial::Reconnect;
/// let mut policy = Reconnect::default();
/// policy.initial_delay = Duration::from_millis(100);
/// policy.max_attempts = Some(20);
/// assert_eq!(policy.max_delay, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The wait before the first new attempt after a session ends (default 250 ms); it
    /// doubles after each failed attempt, and starts again once a session is up.
    pub initial_delay: Duration,
    /// The longest wait between attempts (default 10 s).
    pub max_delay: Duration,
    /// The part of each wait drawn at random, from 0 to 1 (default 0.5: a wait is 50 to 100 %
    /// of the delay), so that clients that lost one server do not all return at once.
    pub jitter: f64,
    /// Failed attempts in a row after which it gives up (default `None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The wait for `delay`, with jitter.
    fn wait(&self, delay: Duration) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        delay.mul_f64(1.0 - jitter * fastrand::f64())
    }
}

/// What happened to a [`Reconnecting`] session's connection.
///
/// ```no_run
/// # async fn demo(live: moq_dial::Reconnecting) {
/// use moq_dial::ConnectionEvent;
/// if let Some(ConnectionEvent::Disconnected(why)) = live.next_event().await {
///     println!("lost the relay: {why}; dialing again");
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A session is up: the first one (`reconnects` 0) or a new one after a disconnect.
    Connected {
        /// Sessions made before this one.
        reconnects: u32,
    },
    /// The session ended, not by a local close: it dials again.
    Disconnected(CloseReason),
    /// An attempt to dial failed; the next comes after `retry_in`.
    Failed {
        /// Failed attempts in a row, this one included.
        attempt: u32,
        /// Why it failed.
        error: DialError,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// [`Reconnect::max_attempts`] attempts failed in a row: no more.
    GaveUp,
}

/// Events kept for the application at most; past it the newest are dropped (and logged).
const EVENTS: usize = 64;

/// The current session and how many there have been.
type Current = (u64, Option<Session>);

/// A session to one URL that dials again when it ends (see the module docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_dial::{Dialer, Reconnect, ServerTrust, SubscribeParams};
/// let dialer = Dialer::new(ServerTrust::platform())?;
/// let live = dialer.reconnecting("moqt://relay.example.com:4443", Reconnect::default());
/// let mut track = live.subscribe("/cam", "video", SubscribeParams::default());
/// while let Some(mut group) = track.next_group().await? {
///     while let Some(frame) = group.read_frame().await? {
///         println!("group {}: {} bytes", group.sequence().0, frame.len());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reconnecting {
    current: watch::Receiver<Current>,
    /// Set (with the code and reason) by a local close.
    close: watch::Sender<Option<(ErrorCode, String)>>,
    events: tokio::sync::Mutex<mpsc::Receiver<ConnectionEvent>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    policy: Reconnect,
}

impl Dialer {
    /// A session to `url` that dials again after it ends, by `policy`. The first dial
    /// starts at once, in the background.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), moq_dial::DialError> {
    /// use moq_dial::{Dialer, Reconnect, ServerTrust};
    /// let live = Dialer::new(ServerTrust::platform())?.reconnecting("moqt://relay.example:4443", Reconnect::default());
    /// # Ok(()) }
    /// ```
    pub fn reconnecting(self, url: &str, policy: Reconnect) -> Reconnecting {
        Reconnecting::new(Arc::new(self), url, policy)
    }
}

impl Reconnecting {
    /// A session to `url` through `dialer`, dialled again by `policy`.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), moq_dial::DialError> {
    /// use std::sync::Arc;
    /// use moq_dial::{Dialer, Reconnect, Reconnecting, ServerTrust};
    /// let dialer = Arc::new(Dialer::new(ServerTrust::platform())?);
    /// // Two resilient sessions from one dialer.
    /// let a = Reconnecting::new(dialer.clone(), "moqt://a.example:4443", Reconnect::default());
    /// let b = Reconnecting::new(dialer, "moqt://b.example:4443", Reconnect::default());
    /// # Ok(()) }
    /// ```
    pub fn new(dialer: Arc<Dialer>, url: &str, policy: Reconnect) -> Self {
        let (current_tx, current) = watch::channel((0, None));
        let (close, close_rx) = watch::channel(None);
        let (events_tx, events) = mpsc::channel(EVENTS);
        let task = tokio::spawn(run(
            dialer,
            url.to_owned(),
            policy.clone(),
            current_tx,
            close_rx,
            events_tx,
        ));
        Self {
            current,
            close,
            events: tokio::sync::Mutex::new(events),
            task: Mutex::new(Some(task)),
            policy,
        }
    }

    /// The session now, if one is up.
    ///
    /// ```no_run
    /// # fn demo(live: moq_dial::Reconnecting) {
    /// match live.session() {
    ///     Some(session) => println!("up: {:?}", session.remote_addr()),
    ///     None => println!("dialing"),
    /// }
    /// # }
    /// ```
    pub fn session(&self) -> Option<Session> {
        self.current.borrow().1.clone()
    }

    /// The session once one is up; `None` once closed or given up.
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(session) = live.connected().await {
    ///     println!("connected to {:?}", session.remote_addr());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connected(&self) -> Option<Session> {
        let mut current = self.current.clone();
        let (_, session) = current.wait_for(|(_, s)| s.is_some()).await.ok()?.clone();
        session
    }

    /// The next event; `None` once closed or given up and every event was read.
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_dial::ConnectionEvent;
    /// while let Some(event) = live.next_event().await {
    ///     match event {
    ///         ConnectionEvent::Connected { reconnects } => println!("up (reconnects: {reconnects})"),
    ///         ConnectionEvent::Disconnected(why) => println!("lost: {why}"),
    ///         ConnectionEvent::Failed { retry_in, .. } => println!("retry in {retry_in:?}"),
    ///         ConnectionEvent::GaveUp => break,
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&self) -> Option<ConnectionEvent> {
        self.events.lock().await.recv().await
    }

    /// Subscribes to a track on every session in turn (see [`ResumingTrack`]).
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) -> Result<(), moq_dial::error::EndReason> {
    /// use moq_dial::SubscribeParams;
    /// let mut video = live.subscribe("/cam", "video", SubscribeParams::default());
    /// while let Some(mut group) = video.next_group().await? {
    ///     let frames = group.read_all().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, path: &str, track: &str, params: SubscribeParams) -> ResumingTrack {
        ResumingTrack {
            current: self.current.clone(),
            path: path.to_owned(),
            track: track.to_owned(),
            params,
            reader: None,
            generation: 0,
            last: None,
            resumed: false,
            retry: self.policy.initial_delay,
            policy: self.policy.clone(),
        }
    }

    /// Listens for the peer's broadcasts under `prefix` on every session in turn (see
    /// [`ResumingAnnouncements`]).
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) {
    /// let mut rooms = live.announced("/rooms/");
    /// while let Some(room) = rooms.next().await {
    ///     println!("{} is live", room.path());
    /// }
    /// # }
    /// ```
    pub fn announced(&self, prefix: &str) -> ResumingAnnouncements {
        ResumingAnnouncements {
            current: self.current.clone(),
            prefix: prefix.to_owned(),
            announcements: None,
            generation: 0,
        }
    }

    /// Closes the session now and dials no more. Readers end with the close.
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) {
    /// live.close(moq_dial::code::session::NO_ERROR, "done");
    /// live.stopped().await;
    /// # }
    /// ```
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.close.send_replace(Some((code, reason.to_owned())));
    }

    /// Waits until the background dialing has stopped (after [`Reconnecting::close`], or
    /// once it gave up).
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) {
    /// live.close(moq_dial::code::session::NO_ERROR, "bye");
    /// live.stopped().await;
    /// # }
    /// ```
    pub async fn stopped(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Reconnecting {
    fn drop(&mut self) {
        self.close
            .send_replace(Some((code::session::NO_ERROR, "dropped".to_owned())));
    }
}

/// The background dialing: one session at a time, a new one after each ends.
async fn run(
    dialer: Arc<Dialer>,
    mut url: String,
    policy: Reconnect,
    current: watch::Sender<Current>,
    mut close: watch::Receiver<Option<(ErrorCode, String)>>,
    events: mpsc::Sender<ConnectionEvent>,
) {
    let tell = |event: ConnectionEvent| {
        if events.try_send(event).is_err() {
            tracing::debug!("reconnect events not read: one dropped");
        }
    };
    let mut delay = policy.initial_delay;
    let mut failures = 0u32;
    let mut sessions = 0u32;
    loop {
        let dialled = tokio::select! {
            dialled = dialer.connect(&url) => dialled,
            _ = close.wait_for(Option::is_some) => return,
        };
        let session = match dialled {
            Ok(session) => session,
            Err(error) => {
                failures += 1;
                if policy.max_attempts.is_some_and(|max| failures >= max) {
                    tracing::info!(%url, failures, error = %error, "reconnect: giving up");
                    tell(ConnectionEvent::Failed {
                        attempt: failures,
                        error,
                        retry_in: Duration::ZERO,
                    });
                    tell(ConnectionEvent::GaveUp);
                    return;
                }
                let wait = policy.wait(delay);
                tracing::debug!(%url, failures, error = %error, ?wait, "reconnect: attempt failed");
                tell(ConnectionEvent::Failed {
                    attempt: failures,
                    error,
                    retry_in: wait,
                });
                delay = (delay * 2).min(policy.max_delay);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    _ = close.wait_for(Option::is_some) => return,
                }
            }
        };
        tracing::info!(%url, reconnects = sessions, "reconnect: session up");
        tell(ConnectionEvent::Connected {
            reconnects: sessions,
        });
        sessions += 1;
        failures = 0;
        delay = policy.initial_delay;
        current.send_modify(|(generation, s)| {
            *generation += 1;
            *s = Some(session.clone());
        });
        let mut goaway_seen = false;
        let reason = {
            let goaway = session.goaway_received();
            tokio::pin!(goaway);
            loop {
                tokio::select! {
                    reason = session.closed() => break Some(reason),
                    _ = close.wait_for(Option::is_some) => break None,
                    uri = &mut goaway, if !goaway_seen => {
                        goaway_seen = true;
                        // The server asks us to go (to its new URI, if it gave one): a new
                        // session there, this one closed.
                        if let Some(uri) = uri {
                            tracing::info!(%uri, "reconnect: GOAWAY, dialing again");
                            if !uri.is_empty() {
                                url = uri;
                            }
                            session.close(code::session::NO_ERROR, "goaway");
                        }
                    }
                }
            }
        };
        current.send_modify(|(_, s)| *s = None);
        let Some(reason) = reason else {
            let (code, why) = close.borrow().clone().unwrap_or_default();
            session.close(code, &why);
            drop(session);
            // Its CONNECTION_CLOSE leaves before the task ends.
            let _ = tokio::time::timeout(Duration::from_secs(1), dialer.wait_idle()).await;
            return;
        };
        drop(session);
        tracing::info!(%url, %reason, "reconnect: session ended");
        tell(ConnectionEvent::Disconnected(reason));
        let wait = if goaway_seen {
            Duration::ZERO
        } else {
            policy.wait(delay)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = close.wait_for(Option::is_some) => return,
        }
    }
}

/// The next session newer than `generation`; an error once the [`Reconnecting`] is closed
/// or gave up.
async fn newer(
    current: &mut watch::Receiver<Current>,
    generation: u64,
) -> Result<(u64, Session), EndReason> {
    let ended = || EndReason::SessionClosed(CloseReason::Transport("no more sessions".into()));
    let now = current
        .wait_for(|(g, s)| *g > generation && s.is_some())
        .await
        .map_err(|_| ended())?;
    let (g, session) = now.clone();
    session.map(|s| (g, s)).ok_or_else(ended)
}

/// A subscription that lives across sessions and publishers. When its session ends it
/// subscribes again on the next one; when the track ends on a live session (its publisher
/// left: moq-dev's relay ends or resets the subscription, where moq-fanout carries it over
/// to the next publisher by itself) or is not found, it waits until the broadcast is
/// announced on the session and subscribes again. Either way it starts again from the
/// latest group and gives no group twice (the one it gave last, which a new subscription
/// starts with). Attempts that bring no group wait longer each time, by the policy's
/// backoff. It ends for good when the [`Reconnecting`] is closed or gives up, or when a
/// subscription is refused as unauthorized.
///
/// ```no_run
/// # fn demo(live: moq_dial::Reconnecting) {
/// let video: moq_dial::ResumingTrack = live.subscribe("/cam", "video", Default::default());
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the subscription is made as it is read"]
pub struct ResumingTrack {
    current: watch::Receiver<Current>,
    path: String,
    track: String,
    params: SubscribeParams,
    reader: Option<TrackReader>,
    /// The session `reader` is on.
    generation: u64,
    /// The newest group given.
    last: Option<u64>,
    /// Subscribed again: the first group may be one already given.
    resumed: bool,
    /// The wait before the next attempt that follows one which brought no group.
    retry: Duration,
    policy: Reconnect,
}

impl ResumingTrack {
    /// The next group. An error ends it for good: the subscription was refused as
    /// unauthorized, or the [`Reconnecting`] was closed or gave up.
    ///
    /// ```no_run
    /// # async fn demo(mut video: moq_dial::ResumingTrack) -> Result<(), moq_dial::error::EndReason> {
    /// // Across a relay restart: the groups go on, from the next one on the new session.
    /// while let Some(group) = video.next_group().await? {
    ///     println!("group {}", group.sequence().0);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_group(&mut self) -> Result<Option<GroupReader>, EndReason> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                let (generation, session) = newer(&mut self.current, self.generation).await?;
                self.generation = generation;
                self.subscribe(&session);
                continue;
            };
            let end = match reader.next_group().await {
                Ok(Some(group)) => {
                    let sequence = group.sequence().0;
                    let again = std::mem::take(&mut self.resumed) && self.last == Some(sequence);
                    self.retry = self.policy.initial_delay;
                    if again {
                        continue;
                    }
                    self.last = Some(self.last.map_or(sequence, |l| l.max(sequence)));
                    return Ok(Some(group));
                }
                Ok(None) => None,
                Err(e) => Some(e),
            };
            self.reader = None;
            self.resumed = true;
            match end {
                // The next session will do.
                Some(EndReason::SessionClosed(_)) => {}
                Some(EndReason::PeerReset(c)) if c == code::subscribe::UNAUTHORIZED => {
                    return Err(EndReason::PeerReset(c));
                }
                // The publisher left, or is not there yet: when it is announced again.
                _ => self.after_announcement().await,
            }
        }
    }

    /// Waits (at least the retry delay) until the broadcast is announced on the current
    /// session, then subscribes again; returns early, not subscribed, if the session ends.
    async fn after_announcement(&mut self) {
        let wait = self.policy.wait(self.retry);
        self.retry = (self.retry * 2).min(self.policy.max_delay);
        let (generation, session) = self.current.borrow().clone();
        let Some(session) = session.filter(|_| generation == self.generation) else {
            return;
        };
        // A prefix names the paths below it: ask for the broadcast's parent's.
        let parent = self
            .path
            .trim_matches('/')
            .rsplit_once('/')
            .map_or("", |(parent, _)| parent);
        let Ok(mut announced) = session.announced(parent) else {
            return;
        };
        let path = self.path.clone();
        let announced = async {
            while let Some(announcement) = announced.next().await {
                if announcement.path() == path.as_str() {
                    return true;
                }
            }
            false
        };
        let (found, ()) = tokio::join!(announced, tokio::time::sleep(wait));
        if found {
            self.subscribe(&session);
        }
    }

    /// The groups as a `futures::Stream`, ending after the track ends or an error.
    ///
    /// ```no_run
    /// # async fn demo(video: moq_dial::ResumingTrack) {
    /// use futures_util::StreamExt;
    /// let mut groups = Box::pin(video.into_stream());
    /// while let Some(Ok(group)) = groups.next().await {
    ///     println!("group {}", group.sequence().0);
    /// }
    /// # }
    /// ```
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<GroupReader, EndReason>> + Send + 'static {
        futures_util::stream::unfold(Some(self), |track| async move {
            let mut track = track?;
            match track.next_group().await {
                Ok(Some(group)) => Some((Ok(group), Some(track))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    fn subscribe(&mut self, session: &Session) {
        match session.subscribe(self.path.as_str(), &self.track, self.params) {
            Ok(reader) => {
                self.params.start = None;
                self.reader = Some(reader);
            }
            // Refused at once (the session is closing): the next session will do.
            Err(e) => tracing::debug!(error = %e, "resubscribe failed"),
        }
    }
}

/// Announcements under a prefix across sessions: when the session ends, the announcements
/// it gave end, and the next session's come as they arrive (a broadcast still live is
/// announced again).
///
/// ```no_run
/// # fn demo(live: moq_dial::Reconnecting) {
/// let rooms: moq_dial::ResumingAnnouncements = live.announced("/rooms/");
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the interest is made as it is read"]
pub struct ResumingAnnouncements {
    current: watch::Receiver<Current>,
    prefix: String,
    announcements: Option<Announcements>,
    generation: u64,
}

impl ResumingAnnouncements {
    /// The announcements as a `futures::Stream`.
    ///
    /// ```no_run
    /// # async fn demo(live: moq_dial::Reconnecting) {
    /// use futures_util::StreamExt;
    /// let mut rooms = Box::pin(live.announced("/rooms/").into_stream());
    /// while let Some(room) = rooms.next().await {
    ///     println!("{}", room.path());
    /// }
    /// # }
    /// ```
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Announcement> + Send + 'static {
        futures_util::stream::unfold(self, |mut announced| async move {
            announced.next().await.map(|a| (a, announced))
        })
    }

    /// The next broadcast that became active; `None` once the [`Reconnecting`] is closed or
    /// gave up.
    ///
    /// ```no_run
    /// # async fn demo(mut rooms: moq_dial::ResumingAnnouncements) {
    /// while let Some(room) = rooms.next().await {
    ///     println!("{} is live", room.path());
    /// }
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<Announcement> {
        loop {
            match self.announcements.as_mut() {
                Some(announcements) => match announcements.next().await {
                    Some(announcement) => return Some(announcement),
                    None => self.announcements = None,
                },
                None => {
                    let (generation, session) =
                        newer(&mut self.current, self.generation).await.ok()?;
                    self.generation = generation;
                    self.announcements = session.announced(&self.prefix).ok();
                }
            }
        }
    }
}
