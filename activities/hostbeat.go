package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/commit-relay/worker-lifecycle/internal/health"
)

// HeartbeatSocketEnv names the entry of a worker process's environment that
// holds the path of its host's heartbeat socket, set when the worker
// program listens on one (the local heartbeat path).
const HeartbeatSocketEnv = "WORKER_HEARTBEAT_SOCKET"

// Heartbeat paths: how the lifecycle, or a reader, got a heartbeat.
const (
	// PathSignal: a heartbeat signal sent to the lifecycle by any client.
	PathSignal = "signal"
	// PathHost: sent to the worker's own host, which holds it in its watch
	// and relays to the lifecycle only what it acts on.
	PathHost = "host"
)

// HostHeartbeat is the latest heartbeat a host took from one of its own
// agents, as the watch holds it and shows it in its activity heartbeat.
type HostHeartbeat struct {
	// At is when the host received it, by the host's clock.
	At time.Time `json:"at"`
	// Count is how many the host took from this process.
	Count int64 `json:"count"`
	// TokensUsed is the process's running total, as the agent sent it;
	// PriorTokens (WatchInput) is what earlier processes of the lifecycle
	// used, so their sum is the lifecycle's.
	TokensUsed  int64      `json:"tokens_used"`
	PriorTokens int64      `json:"prior_tokens,omitempty"`
	HealthScore *int       `json:"health_score,omitempty"`
	Status      string     `json:"status,omitempty"`
	Message     string     `json:"message,omitempty"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	Process     string     `json:"process,omitempty"`
}

// ageAt is how long before now the host received the heartbeat, never
// negative: what a relay carries as its age.
func (h HostHeartbeat) ageAt(now time.Time) time.Duration { return max(now.Sub(h.At), 0) }

// WatchDetails is what a watch records as its activity heartbeat, which
// DescribeWorkflowExecution shows among the lifecycle's pending activities
// (and the Web UI with it): readers take the freshest heartbeat from it.
type WatchDetails struct {
	Heartbeat *HostHeartbeat `json:"heartbeat,omitempty"`
}

// HeartbeatBoard hands the heartbeats a host's agents send to it (the
// worker program's heartbeat socket) to the watches of their processes.
// A process has its place from its start (Expect), so that what its agent
// sends before its watch runs (a watch late behind an overloaded server,
// or between two runs of the lifecycle) is held for the watch and for the
// lifecycle's backstop (HeldHeartbeat) instead of becoming a signal. A
// heartbeat for a worker of which this host holds no process is not taken:
// its sender signals the lifecycle instead.
type HeartbeatBoard struct {
	mu    sync.Mutex
	slots map[string]*beatSlot
}

// beatSlot is one watch's place on the board.
type beatSlot struct {
	board    *HeartbeatBoard
	workerID string
	// process is the tag of the watched process (ProcessTag); a heartbeat
	// naming another process is not taken, so the lifecycle rejects it.
	process string
	prior   int64
	latest  *HostHeartbeat
	count   int64
	notify  chan struct{}
	// stopping is set when the process's stop begins (Stopping);
	// relayed is the Count of the last heartbeat the watch relayed.
	stopping bool
	relayed  int64
	// watched is set while a watch that relays holds the place; a place
	// without one holds the heartbeats until a watch takes it over, or
	// until holdUntil: a lifecycle that ended without stopping its process
	// (terminated) runs no watch again, and its agent must hear so from
	// the signal's answer. holdFor is how long the place is held so.
	watched   bool
	holdUntil time.Time
	holdFor   time.Duration
}

// expired says whether a place without a watch is held no longer; b.mu is
// held.
func (s *beatSlot) expired(now time.Time) bool {
	return !s.watched && now.After(s.holdUntil)
}

// NewHeartbeatBoard returns an empty board.
func NewHeartbeatBoard() *HeartbeatBoard {
	return &HeartbeatBoard{slots: map[string]*beatSlot{}}
}

// Offer gives hb to the watch of workerID, stamped with the host's clock,
// and reports whether one took it.
func (b *HeartbeatBoard) Offer(workerID string, hb HostHeartbeat) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slots[workerID]
	if s != nil && s.expired(time.Now()) {
		delete(b.slots, workerID)
		s = nil
	}
	if s == nil || s.stopping || (hb.Process != "" && hb.Process != s.process) {
		// While its process is stopped, an agent's heartbeat (its last
		// count, sent on SIGTERM) is signalled before its POST is
		// answered, so that it reaches the lifecycle before the process
		// is gone, as a signal sent by the agent itself did.
		return false
	}
	s.count++
	hb.At, hb.Count, hb.PriorTokens = time.Now().UTC(), s.count, s.prior
	// Relays name their process, so that one arriving after the next
	// process started is rejected, not counted for it.
	hb.Process = s.process
	s.latest = &hb
	select {
	case s.notify <- struct{}{}:
	default: // the watch has a wake-up pending and reads the latest
	}
	return true
}

// Expect gives a process this host started, or found running again after
// a restart of this program, its place before its watch runs, held for
// holdFor (StartInput.HoldBeatsFor; none when zero). A place the process
// has already is kept. The places of other processes held past their
// time are given up.
func (b *HeartbeatBoard) Expect(workerID, process string, holdFor time.Duration) {
	if b == nil || process == "" || holdFor <= 0 {
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.slots {
		if s.expired(now) {
			delete(b.slots, id)
		}
	}
	if s := b.slotOf(workerID, process); s != nil {
		if until := now.Add(holdFor); !s.watched && until.After(s.holdUntil) {
			s.holdUntil = until
		}
		return
	}
	// Any place of an earlier process of the worker is given up: that
	// process was stopped before this one started.
	b.slots[workerID] = &beatSlot{board: b, workerID: workerID, process: process, notify: make(chan struct{}, 1),
		holdFor: holdFor, holdUntil: now.Add(holdFor)}
}

// ExpectRecorded gives each process the host's records name, and which
// still runs, its place on the board (Expect): after a restart of the
// worker program its agents' heartbeats are held for the watches that come
// back, and answer the lifecycles' backstops, instead of each being
// signalled until then. It returns how many it expects. (A function, not
// a method: every method of HostActivities is an activity.)
func ExpectRecorded(a *HostActivities) int {
	if a.Beats == nil || a.StateDir == "" {
		return 0
	}
	n := 0
	for _, r := range a.workerRecords() {
		p := r.info
		if p.Token == "" || p.PID <= 0 || p.HoldBeatsFor <= 0 {
			// A record without a PID is taken back, and held, by the
			// lifecycle's next StartProcess (readopt).
			continue
		}
		if running, err := sameProcessRunning(p.PID, p.StartTicks); err != nil || !running {
			continue
		}
		a.Beats.Expect(r.workerID, ProcessTag(p.Token), p.HoldBeatsFor)
		n++
	}
	return n
}

// attach gives the watch of a process its place; a later watch of the same
// worker (a retried attempt) takes the place over.
//
// holdFor is how long the place goes on holding heartbeats once the watch
// is cancelled (detach).
func (b *HeartbeatBoard) attach(workerID, process string, prior int64, holdFor time.Duration) *beatSlot {
	s := &beatSlot{board: b, workerID: workerID, process: process, prior: prior, notify: make(chan struct{}, 1), watched: true, holdFor: holdFor}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.slotOf(workerID, process); old != nil {
		// The same process watched again, or watched at last: what it sent
		// is still its latest, and a stop begun goes on.
		s.latest, s.count, s.stopping, s.relayed = old.latest, old.count, old.stopping, old.relayed
		if s.latest != nil {
			// Held before the watch knew what earlier processes used.
			hb := *s.latest
			hb.PriorTokens = prior
			s.latest = &hb
		}
	}
	b.slots[workerID] = s
	return s
}

// release gives up the place of a process whose watch relays nothing (a
// host without a reporter, a watch given no zombie limit; a lifecycle that
// takes no relays asks for no place): from now on its agent's heartbeats
// are signalled. The latest heartbeat held and not relayed is returned,
// for the watch to pass on.
func (b *HeartbeatBoard) release(workerID, process string) *HostHeartbeat {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slotOf(workerID, process)
	if s == nil || s.watched {
		return nil
	}
	delete(b.slots, workerID)
	if s.stopping {
		return nil // its stop relayed it
	}
	return s.unrelayed()
}

// Forget gives up the place of a process that was stopped.
func (b *HeartbeatBoard) Forget(workerID, process string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slotOf(workerID, process) != nil {
		delete(b.slots, workerID)
	}
}

// Stopping marks the stop of the process: the watch relays nothing more
// and the board takes no more heartbeats for it (Offer), and the latest
// heartbeat the watch has not relayed is returned, for the stop to relay
// before the process is signalled: a lifecycle that is cancelled does not
// read its watch's end.
func (b *HeartbeatBoard) Stopping(workerID, process string) *HostHeartbeat {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slotOf(workerID, process)
	if s == nil {
		return nil
	}
	s.stopping = true
	hb := s.unrelayed()
	if hb != nil {
		s.relayed = hb.Count
	}
	return hb
}

// unrelayed is a copy of the latest heartbeat when it was not relayed, nil
// otherwise; b.mu is held.
func (s *beatSlot) unrelayed() *HostHeartbeat {
	if s.latest == nil || s.latest.Count == s.relayed {
		return nil
	}
	hb := *s.latest
	return &hb
}

// slotOf is the place of that process, nil when it has none or one held
// past its time; b.mu is held.
func (b *HeartbeatBoard) slotOf(workerID, process string) *beatSlot {
	if s := b.slots[workerID]; s != nil && s.process == process && !s.expired(time.Now()) {
		return s
	}
	return nil
}

// markRelayed records that the watch relayed the heartbeat of that count.
func (s *beatSlot) markRelayed(count int64) {
	s.board.mu.Lock()
	defer s.board.mu.Unlock()
	s.relayed = max(s.relayed, count)
}

// state says whether the slot is still the watch's (no later watch took it
// over) and whether its process is being stopped.
func (s *beatSlot) state() (current, stopping bool) {
	s.board.mu.Lock()
	defer s.board.mu.Unlock()
	return s.board.slots[s.workerID] == s, s.stopping
}

// detach gives the place up when the watch ends, unless a later watch took
// it over: for good when the process ended; else (the watch was cancelled:
// the lifecycle continues as new, or is about to stop the process) the
// place goes on holding heartbeats for holdFor, for the next watch or the
// stop.
func (s *beatSlot) detach(ended bool) {
	s.board.mu.Lock()
	defer s.board.mu.Unlock()
	if s.board.slots[s.workerID] != s {
		return
	}
	if ended || s.holdFor <= 0 {
		delete(s.board.slots, s.workerID)
		return
	}
	s.watched, s.holdUntil = false, time.Now().Add(s.holdFor)
}

// last is the latest heartbeat, a copy; nil before one.
func (s *beatSlot) last() *HostHeartbeat {
	s.board.mu.Lock()
	defer s.board.mu.Unlock()
	if s.latest == nil {
		return nil
	}
	hb := *s.latest
	return &hb
}

// relayReason says whether the watch must relay cur to the lifecycle now,
// and why; "" when not. The lifecycle acts on busy and idle, on the health
// score (of which tokens left are part), and on the age of the last
// heartbeat: each change of those is relayed at once, the rest of the
// heartbeats only as a keepalive once per keepalive interval, with the age
// the host saw, and an agent silent for the zombie limit is reported once
// so that the lifecycle need not wait for its own backstop.
//
// sent is the last heartbeat relayed (nil before one) and sentAt when;
// silentSent whether the silence of sent was reported already.
func relayReason(sent *HostHeartbeat, sentAt time.Time, silentSent bool, cur *HostHeartbeat, now time.Time, keepalive, zombie time.Duration, budget int64) string {
	switch {
	case cur == nil:
		return ""
	case sent == nil:
		return "first"
	case cur.Count != sent.Count:
		// Something new since the last relay.
		switch {
		case cur.Status != "" && cur.Status != sent.Status:
			return "status"
		case health.TokenBand(cur.TokensUsed, budget) != health.TokenBand(sent.TokensUsed, budget):
			return "tokens"
		case scoreBand(cur.HealthScore) != scoreBand(sent.HealthScore):
			return "health"
		case now.Sub(sentAt) >= keepalive:
			return "keepalive"
		}
	case !silentSent && now.Sub(cur.At) >= zombie:
		return "silent"
	}
	return ""
}

// scoreBand is the band of an agent's own health score; "" without one.
func scoreBand(score *int) string {
	if score == nil {
		return ""
	}
	return health.Band(*score)
}

// KeepaliveEvery is how often a watch relays a heartbeat that changes
// nothing the lifecycle acts on: once per zombie limit. The host reports
// an agent's silence itself when it reaches the zombie limit, so the
// keepalive only has to reach the lifecycle before its backstop, one more
// zombie limit later (workflows: hostGrace); at the default limits and
// a heartbeat every 30 s that is 4 events per 10 heartbeats, plus a timer
// at most every zombie limit.
func KeepaliveEvery(zombieAfter time.Duration) time.Duration {
	return zombieAfter
}

// relay is a watch's part of the local heartbeat path: it shows the
// agent's latest heartbeat in the watch's activity heartbeat and relays
// to the lifecycle what relayReason says it must hear.
type relay struct {
	a    *HostActivities
	in   WatchInput
	slot *beatSlot
	// sent is the last heartbeat relayed and sentAt when; silentSent is
	// whether its silence was reported.
	sent       *HostHeartbeat
	sentAt     time.Time
	silentSent bool
	details    WatchDetails
	// showEvery is how often the watch's details must reach the server
	// to keep its activity alive (4/5 of the heartbeat timeout, as the
	// SDK throttles its own), shownAt when ShowWatch last did; 0 leaves
	// the watch's heartbeats to the SDK (a watch given no timeout).
	// sdkAt is when a failed show last handed over to the SDK's heartbeat.
	showEvery time.Duration
	shownAt   time.Time
	sdkAt     time.Time
	// silenceTimer fires at silenceAt (the latest heartbeat) plus the
	// zombie limit.
	silenceTimer *time.Timer
	silenceAt    time.Time
}

// newRelay attaches the watch to the board, or returns nil when the
// lifecycle or this host takes no relayed heartbeats; then the place the
// process had from its start is given up, and the latest heartbeat it held
// is relayed (those before it are superseded).
func (a *HostActivities) newRelay(ctx context.Context, in WatchInput) *relay {
	if !in.Relay || a.Beats == nil || a.Reporter == nil || in.ZombieAfter <= 0 {
		if held := a.Beats.release(in.WorkerID, ProcessTag(in.Process.Token)); held != nil && a.Reporter != nil {
			if err := a.Reporter.RelayHeartbeat(ctx, in.WorkerID, *held, held.ageAt(time.Now())); err != nil && ctx.Err() == nil {
				activity.GetLogger(ctx).Warn("Passing on a heartbeat held before the watch failed", "worker_id", in.WorkerID, "error", err)
			}
		}
		return nil
	}
	r := &relay{a: a, in: in, slot: a.Beats.attach(in.WorkerID, ProcessTag(in.Process.Token), in.PriorTokens, in.Process.HoldBeatsFor)}
	r.details.Heartbeat = r.slot.last()
	r.showEvery = in.WatchHeartbeat * 4 / 5
	return r
}

// silence is ready when the latest heartbeat reaches the zombie limit's
// age, so that the silence is reported then and not at the next tick.
func (r *relay) silence() <-chan time.Time {
	if r == nil || r.silentSent {
		return nil
	}
	cur := r.slot.last()
	if cur == nil {
		return nil
	}
	if r.silenceAt != cur.At {
		if r.silenceTimer != nil {
			r.silenceTimer.Stop()
		}
		r.silenceAt = cur.At
		r.silenceTimer = time.NewTimer(time.Until(cur.At.Add(r.in.ZombieAfter)))
	}
	return r.silenceTimer.C
}

// wake is ready when a heartbeat came; nil without a relay.
func (r *relay) wake() <-chan struct{} {
	if r == nil {
		return nil
	}
	return r.slot.notify
}

// close ends the watch's part; ended says whether the process ended.
func (r *relay) close(ended bool) {
	if r != nil {
		r.slot.detach(ended)
		if r.silenceTimer != nil {
			r.silenceTimer.Stop()
		}
	}
}

// heartbeatDetails are what the watch's SDK heartbeats carry, so that one
// of them never blanks what ShowWatch recorded.
func (r *relay) heartbeatDetails() []any {
	if r == nil || r.details.Heartbeat == nil {
		return nil
	}
	return []any{r.details}
}

// heard shows a new heartbeat at once and relays it if the lifecycle acts
// on it. Failures are logged: the watch exists to notice the process
// ending, and the next heartbeat or tick tries again.
func (r *relay) heard(ctx context.Context) {
	cur := r.slot.last()
	if cur == nil {
		return
	}
	if _, stopping := r.slot.state(); stopping {
		// The stop relayed what the lifecycle had not had.
		return
	}
	r.details.Heartbeat = cur
	if r.showEvery <= 0 {
		// The SDK sends what it was given last when its throttle allows:
		// given the older details, it would overwrite the newer ones.
		activity.RecordHeartbeat(ctx, r.details)
	}
	r.show(ctx)
	r.check(ctx, cur, time.Now())
}

// show records the watch's details with the server at once (ShowWatch),
// so that status shows the heartbeat; that also keeps the activity alive,
// so while it succeeds the watch sends none of the SDK's heartbeats, which
// would be a second write to the server for each.
//
// When it fails (the server said the watch is cancelled, paused or gone,
// or did not answer) the SDK's heartbeat is sent: the SDK reads the same
// answer and cancels ctx, as for any activity. It is sent at most once per
// two showEvery: a failing server gets no more from the watch than from
// the SDK's own throttle, and the SDK never holds back older details to
// send after a newer show (its batch lasts one showEvery from a send that
// takes at most as long). The show itself is tried again at the next poll.
func (r *relay) show(ctx context.Context) {
	at := time.Now()
	sctx, cancel := context.WithTimeout(ctx, r.showWait())
	err := r.a.Reporter.ShowWatch(sctx, activity.GetInfo(ctx).TaskToken, r.details)
	cancel()
	if err == nil {
		r.shownAt = at
		return
	}
	if ctx.Err() != nil {
		return
	}
	activity.GetLogger(ctx).Debug("Showing a heartbeat failed", "worker_id", r.in.WorkerID, "error", err)
	if r.showEvery <= 0 || r.sdkAt.IsZero() || at.Sub(r.sdkAt) >= 2*r.showEvery {
		r.sdkAt = at
		activity.RecordHeartbeat(ctx, r.heartbeatDetails()...)
	}
}

// showWait bounds one show, so that a slow server holds up the watch's
// loop (the process's end, the next relay) no longer than the SDK's own
// heartbeat would: a fifth of the heartbeat timeout, 1 to 5 s.
func (r *relay) showWait() time.Duration {
	return min(max(r.in.WatchHeartbeat/5, time.Second), 5*time.Second)
}

// beat is the watch's heartbeat to the server on each poll: the SDK's,
// unless the relay shows the details itself; then only when waiting for
// the next poll, and a show as slow as showWait, could leave nothing shown
// for showEvery (an agent quieter than that, or a show that failed).
func (r *relay) beat(ctx context.Context) {
	switch {
	case r == nil || r.showEvery <= 0:
		activity.RecordHeartbeat(ctx, r.heartbeatDetails()...)
	case time.Since(r.shownAt)+r.a.watchPoll()+r.showWait() >= r.showEvery:
		r.show(ctx)
	}
}

// tick relays what time alone makes due: a keepalive, a silence.
func (r *relay) tick(ctx context.Context) {
	if r != nil {
		r.check(ctx, r.slot.last(), time.Now())
	}
}

func (r *relay) check(ctx context.Context, cur *HostHeartbeat, now time.Time) {
	if current, stopping := r.slot.state(); !current || stopping {
		// A later watch relays for the process; or its stop relayed.
		return
	}
	reason := relayReason(r.sent, r.sentAt, r.silentSent, cur, now, KeepaliveEvery(r.in.ZombieAfter), r.in.ZombieAfter, r.in.TokenBudget)
	if reason == "" {
		return
	}
	if err := r.a.Reporter.RelayHeartbeat(ctx, r.in.WorkerID, *cur, cur.ageAt(now)); err != nil {
		if ctx.Err() == nil {
			activity.GetLogger(ctx).Warn("Relaying a heartbeat failed", "worker_id", r.in.WorkerID, "reason", reason, "error", err)
		}
		return
	}
	r.slot.markRelayed(cur.Count)
	if reason == "silent" {
		r.silentSent = true
		return
	}
	r.sent, r.sentAt, r.silentSent = cur, now, false
}

// flush relays, when the watch is cancelled (the lifecycle stops the
// process, or gives up on it), a heartbeat the lifecycle has not had: an
// agent's last word, sent as it is stopped, on a context of its own.
func (r *relay) flush() {
	if r == nil {
		return
	}
	cur := r.unsent()
	if current, stopping := r.slot.state(); cur == nil || !current || stopping {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushWait)
	defer cancel()
	if r.a.Reporter.RelayHeartbeat(ctx, r.in.WorkerID, *cur, cur.ageAt(time.Now())) == nil {
		r.slot.markRelayed(cur.Count)
		r.sent, r.sentAt = cur, time.Now()
	}
}

// flushWait bounds flush: the watch's cancel waits for it.
const flushWait = 5 * time.Second

// unsent is the latest heartbeat when the lifecycle has not had it.
func (r *relay) unsent() *HostHeartbeat {
	if r == nil {
		return nil
	}
	cur := r.slot.last()
	if cur == nil || (r.sent != nil && r.sent.Count == cur.Count) {
		return nil
	}
	return cur
}

// HeldInput asks a host for the latest heartbeat it holds of a process.
type HeldInput struct {
	WorkerID string `json:"worker_id"`
	// Process is the tag of the process (ProcessTag); a heartbeat of
	// another process is not its.
	Process string `json:"process,omitempty"`
}

// HeldResult is the latest heartbeat the host holds of the process, and
// how old it is by the host's clock; nil when it holds none (no watch of
// it runs there).
type HeldResult struct {
	Heartbeat *HostHeartbeat `json:"heartbeat,omitempty"`
	Age       time.Duration  `json:"age,omitempty"`
}

// HeldHeartbeat answers the lifecycle whose backstop fired without a relay
// from the host: liveness is the host's to judge, and a host slow to relay
// (an overloaded server) must delay a zombie, not make one.
func (a *HostActivities) HeldHeartbeat(_ context.Context, in HeldInput) (HeldResult, error) {
	hb := a.Beats.held(in.WorkerID, in.Process)
	if hb == nil {
		return HeldResult{}, nil
	}
	return HeldResult{Heartbeat: hb, Age: hb.ageAt(time.Now())}, nil
}

// held is the latest heartbeat the watch of the process holds.
func (b *HeartbeatBoard) held(workerID, process string) *HostHeartbeat {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slotOf(workerID, process)
	if s == nil || s.latest == nil {
		return nil
	}
	hb := *s.latest
	return &hb
}

// OldestHeld is the age of the oldest latest heartbeat the board holds for
// a watched process not being stopped (the host's metrics): how long the
// quietest agent of the host has been silent. ok is false when it holds
// none.
func (b *HeartbeatBoard) OldestHeld(now time.Time) (age time.Duration, ok bool) {
	if b == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.slots {
		if s.latest == nil || s.stopping || !s.watched {
			// A place without a watch may be a process that died before
			// its watch ran.
			continue
		}
		if a := s.latest.ageAt(now); !ok || a > age {
			age, ok = a, true
		}
	}
	return age, ok
}
