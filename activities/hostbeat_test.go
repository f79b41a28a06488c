package activities

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
)

func TestRelayReason(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	const keepalive, zombie, budget = 5 * time.Minute, 5 * time.Minute, 1000
	score := func(n int) *int { return &n }
	sent := &HostHeartbeat{At: t0, Count: 3, TokensUsed: 100, Status: "busy", HealthScore: score(90)}
	next := func(change func(*HostHeartbeat)) *HostHeartbeat {
		hb := *sent
		hb.Count++
		hb.At = t0.Add(30 * time.Second)
		if change != nil {
			change(&hb)
		}
		return &hb
	}
	for _, tc := range []struct {
		name       string
		sent       *HostHeartbeat
		silentSent bool
		cur        *HostHeartbeat
		now        time.Time
		want       string
	}{
		{"nothing yet", nil, false, nil, t0, ""},
		{"the first one", nil, false, sent, t0, "first"},
		{"the same one again", sent, false, sent, t0.Add(time.Minute), ""},
		{"a newer one, nothing changed", sent, false, next(nil), t0.Add(30 * time.Second), ""},
		{"a newer message only", sent, false, next(func(h *HostHeartbeat) { h.Message = "step 2" }), t0.Add(30 * time.Second), ""},
		{"tokens within the band", sent, false, next(func(h *HostHeartbeat) { h.TokensUsed = 750 }), t0.Add(30 * time.Second), ""},
		{"tokens into the next band", sent, false, next(func(h *HostHeartbeat) { h.TokensUsed = 751 }), t0.Add(30 * time.Second), "tokens"},
		{"busy to idle", sent, false, next(func(h *HostHeartbeat) { h.Status = "idle" }), t0.Add(30 * time.Second), "status"},
		{"no status says no change", sent, false, next(func(h *HostHeartbeat) { h.Status = "" }), t0.Add(30 * time.Second), ""},
		{"own score into another band", sent, false, next(func(h *HostHeartbeat) { h.HealthScore = score(70) }), t0.Add(30 * time.Second), "health"},
		{"own score within its band", sent, false, next(func(h *HostHeartbeat) { h.HealthScore = score(80) }), t0.Add(30 * time.Second), ""},
		{"keepalive due", sent, false, next(nil), t0.Add(keepalive), "keepalive"},
		{"keepalive not yet due", sent, false, next(nil), t0.Add(keepalive - time.Second), ""},
		{"silent for the zombie limit", sent, false, sent, t0.Add(zombie), "silent"},
		{"silent, reported already", sent, true, sent, t0.Add(2 * zombie), ""},
		{"not yet silent", sent, false, sent, t0.Add(zombie - time.Second), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, relayReason(tc.sent, t0, tc.silentSent, tc.cur, tc.now, keepalive, zombie, budget))
		})
	}
}

func TestBoardGivesHeartbeatsOnlyToTheWatchOfTheirProcess(t *testing.T) {
	b := NewHeartbeatBoard()
	require.False(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 1}), "no watch holds the worker")
	s := b.attach("worker-x-1", "aaaaaaaaaaaaaaaa", 40, 0)
	require.False(t, b.Offer("worker-x-1", HostHeartbeat{Process: "bbbbbbbbbbbbbbbb"}), "an earlier process's heartbeat goes to the lifecycle, which rejects it")
	require.Nil(t, s.last())
	require.True(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 5, Process: "aaaaaaaaaaaaaaaa"}))
	require.True(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 7}), "a heartbeat that names no process is the current one's")
	last := s.last()
	require.NotNil(t, last)
	assert.Equal(t, int64(7), last.TokensUsed)
	assert.Equal(t, int64(2), last.Count)
	assert.Equal(t, int64(40), last.PriorTokens)
	assert.WithinDuration(t, time.Now(), last.At, time.Second)

	// A retried watch of the same process takes the place over, with what
	// was sent; the first one's detach then leaves it alone.
	again := b.attach("worker-x-1", "aaaaaaaaaaaaaaaa", 40, 0)
	assert.Equal(t, int64(2), again.last().Count)
	s.detach(true)
	require.True(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 8}))
	again.detach(true)
	require.False(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 9}))
}

// TestWatchRelaysWhatTheLifecycleActsOn watches a real process with the
// local heartbeat path on: every heartbeat is shown in the watch's details
// at once, the lifecycle hears the first, a change of status or token band,
// a keepalive and the silence, and the end carries the last word.
func TestWatchRelaysWhatTheLifecycleActsOn(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sh", "-c", "echo ready; sleep 60"}})
	rep := &fakeReporter{}
	a.Reporter, a.Beats = rep, NewHeartbeatBoard()
	id := uniqueWorkerID("probe")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1"})
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(info.LogPath)
		return strings.Contains(string(data), "ready")
	}, 10*time.Second, 20*time.Millisecond)
	const zombie = 800 * time.Millisecond
	offer := func(hb HostHeartbeat) {
		t.Helper()
		require.Eventually(t, func() bool { return a.Beats.Offer(id, hb) }, 5*time.Second, 5*time.Millisecond, "the watch never took the heartbeat")
	}
	relayedN := func(n int) []relayedBeat {
		t.Helper()
		var got []relayedBeat
		require.Eventually(t, func() bool { got, _ = rep.relays(); return len(got) >= n }, 5*time.Second, 5*time.Millisecond, "relayed %d, want %d", len(got), n)
		return got
	}
	tag := ProcessTag(info.Token)
	type result struct {
		st  ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		val, err := newActivityEnv(a).ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: id, Process: info,
			Relay: true, ZombieAfter: zombie, TokenBudget: 1000, PriorTokens: 50})
		var st ExitStatus
		if err == nil {
			err = val.Get(&st)
		}
		done <- result{st, err}
	}()

	offer(HostHeartbeat{TokensUsed: 10, Status: "busy", Process: tag})
	got := relayedN(1)
	assert.Equal(t, int64(10), got[0].hb.TokensUsed)
	for i := range 5 {
		offer(HostHeartbeat{TokensUsed: int64(20 + i), Status: "busy", Message: "working"})
	}
	offer(HostHeartbeat{TokensUsed: 30, Status: "idle"})
	got = relayedN(2)
	assert.Equal(t, "idle", got[1].hb.Status)
	_, shown := rep.relays()
	require.NotEmpty(t, shown)
	assert.Equal(t, int64(7), shown[len(shown)-1].Heartbeat.Count, "every heartbeat is shown")
	assert.Equal(t, int64(50), shown[len(shown)-1].Heartbeat.PriorTokens)
	got, _ = rep.relays()
	assert.Len(t, got, 2, "the five heartbeats that changed nothing were not relayed")

	offer(HostHeartbeat{TokensUsed: 800, Status: "idle"})
	got = relayedN(3)
	assert.Equal(t, int64(800), got[2].hb.TokensUsed, "into the band below 25 %% left")

	// Heartbeats that change nothing: one keepalive once the interval
	// (KeepaliveEvery, the zombie limit here) is over.
	start := time.Now()
	for time.Since(start) < zombie+300*time.Millisecond {
		offer(HostHeartbeat{TokensUsed: 801, Status: "idle"})
		time.Sleep(100 * time.Millisecond)
	}
	got = relayedN(4)
	assert.Equal(t, int64(801), got[3].hb.TokensUsed)
	assert.Less(t, got[3].age, 200*time.Millisecond, "a keepalive carries the age of the latest heartbeat")

	// Silence: reported once, with the age of the last heartbeat; before
	// it at most one more keepalive, of the last heartbeat.
	var silent int
	require.Eventually(t, func() bool {
		got, _ = rep.relays()
		return got[len(got)-1].age >= zombie
	}, 5*time.Second, 5*time.Millisecond, "the silence was never reported")
	assert.LessOrEqual(t, len(got), 6)
	time.Sleep(300 * time.Millisecond)
	got, _ = rep.relays()
	for _, r := range got {
		if r.age >= zombie {
			silent++
		}
	}
	assert.Equal(t, 1, silent, "the silence is reported once")

	// A last word, then the end: it comes with the exit status.
	offer(HostHeartbeat{TokensUsed: 900, Message: "bye"})
	killTestGroup(info.PGID)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with the process")
	}
	require.NoError(t, r.err)
	require.NotNil(t, r.st.LastHeartbeat)
	assert.Equal(t, int64(900), r.st.LastHeartbeat.TokensUsed)
	assert.Equal(t, "bye", r.st.LastHeartbeat.Message)
	require.False(t, a.Beats.Offer(id, HostHeartbeat{}), "an ended watch takes no heartbeat")
}

// TestStopRelaysWhatTheWatchHolds: when a process's stop begins, its watch
// relays the heartbeat the lifecycle has not had, and the agent's
// heartbeats from then on (a last count on SIGTERM) are not taken by the
// watch, whose end a cancelled lifecycle does not read, but signalled by
// the socket before the agent is answered.
func TestStopRelaysWhatTheWatchHolds(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sh", "-c", "echo ready; sleep 60"}})
	rep := &fakeReporter{}
	a.Reporter, a.Beats = rep, NewHeartbeatBoard()
	id := uniqueWorkerID("probe")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1"})
	go func() {
		_, _ = newActivityEnv(a).ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: id, Process: info,
			Relay: true, ZombieAfter: time.Minute, TokenBudget: 1000})
	}()
	require.Eventually(t, func() bool { return a.Beats.Offer(id, HostHeartbeat{TokensUsed: 5}) }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { got, _ := rep.relays(); return len(got) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 6}))
	time.Sleep(100 * time.Millisecond)
	got, _ := rep.relays()
	require.Len(t, got, 1, "no change the lifecycle acts on: held")

	_, err := newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info, Grace: time.Second})
	require.NoError(t, err)
	got, _ = rep.relays()
	require.Len(t, got, 2, "the held heartbeat was not relayed by the stop: a cancelled lifecycle would refund as if 5 tokens were spent")
	assert.Equal(t, int64(6), got[1].hb.TokensUsed)
	assert.Equal(t, ProcessTag(info.Token), got[1].hb.Process, "a relay names its process")
}

func TestStoppingHandsOverWhatWasNotRelayed(t *testing.T) {
	b := NewHeartbeatBoard()
	s := b.attach("worker-x-1", "aaaaaaaaaaaaaaaa", 0, 0)
	require.True(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 5}))
	s.markRelayed(1)
	require.Nil(t, b.Stopping("worker-x-1", "bbbbbbbbbbbbbbbb"), "another process's stop")
	require.True(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 6}))
	held := b.Stopping("worker-x-1", "aaaaaaaaaaaaaaaa")
	require.NotNil(t, held)
	assert.Equal(t, int64(6), held.TokensUsed)
	assert.False(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 7}), "during the stop the socket signals")
	assert.Nil(t, b.Stopping("worker-x-1", "aaaaaaaaaaaaaaaa"), "handed over once")
	again := b.attach("worker-x-1", "aaaaaaaaaaaaaaaa", 0, 0)
	assert.False(t, b.Offer("worker-x-1", HostHeartbeat{TokensUsed: 8}), "a watch retried during the stop takes none either")
	again.detach(true)
}

// TestAgentIsGivenItsHostsSocket: a process gets the socket of the worker
// program that started it, and none when it has none, even when the
// program's own environment names one ("off", its setting).
func TestAgentIsGivenItsHostsSocket(t *testing.T) {
	t.Setenv(HeartbeatSocketEnv, "off")
	for _, socket := range []string{"/run/worker/heartbeat.sock", ""} {
		a := newProcActivities(t, map[string][]string{"probe": {"sleep", "30"}})
		a.HeartbeatSocket = socket
		info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: uniqueWorkerID("probe"), WorkerType: "probe", TaskID: "task-1"})
		assert.Eventually(t, func() bool { return hasEnvEntry(info.PID, HeartbeatSocketEnv+"="+socket) }, 2*time.Second, 10*time.Millisecond, "socket %q", socket)
		assert.False(t, hasEnvEntry(info.PID, HeartbeatSocketEnv+"=off"))
	}
}

func TestHeldHeartbeatIsTheProcessesLatest(t *testing.T) {
	a := &HostActivities{Beats: NewHeartbeatBoard()}
	got, err := a.HeldHeartbeat(context.Background(), HeldInput{WorkerID: "worker-x-1", Process: "aaaaaaaaaaaaaaaa"})
	require.NoError(t, err)
	require.Nil(t, got.Heartbeat, "no watch: nothing held")
	s := a.Beats.attach("worker-x-1", "aaaaaaaaaaaaaaaa", 0, 0)
	defer s.detach(true)
	require.True(t, a.Beats.Offer("worker-x-1", HostHeartbeat{TokensUsed: 9}))
	got, err = a.HeldHeartbeat(context.Background(), HeldInput{WorkerID: "worker-x-1", Process: "aaaaaaaaaaaaaaaa"})
	require.NoError(t, err)
	require.NotNil(t, got.Heartbeat)
	assert.Equal(t, int64(9), got.Heartbeat.TokensUsed)
	assert.Less(t, got.Age, time.Second)
	got, _ = a.HeldHeartbeat(context.Background(), HeldInput{WorkerID: "worker-x-1", Process: "bbbbbbbbbbbbbbbb"})
	assert.Nil(t, got.Heartbeat, "another process's")
}

// TestWatchShowsInsteadOfTheSDKsHeartbeat: while the watch shows its
// agent's heartbeats to the server itself (ShowWatch, a write each), the
// SDK's heartbeat, a second write, is not sent; a quiet agent is still
// shown before the heartbeat timeout passes, whatever the poll; and a show
// that fails hands over to the SDK's heartbeat, whose answer carries a
// cancel, at most once per two 4/5 of the timeout.
func TestWatchShowsInsteadOfTheSDKsHeartbeat(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sh", "-c", "echo ready; sleep 60"}})
	rep := &fakeReporter{}
	// A poll of 400 ms against a timeout of 1 s: showing only once 4/5
	// of it (800 ms) have passed would leave gaps of 1.2 s.
	const timeout = time.Second
	a.Reporter, a.Beats, a.WatchPoll = rep, NewHeartbeatBoard(), 400*time.Millisecond
	id := uniqueWorkerID("probe")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1"})
	env := newActivityEnv(a)
	var sdkBeats atomic.Int64
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { sdkBeats.Add(1) })
	done := make(chan error, 1)
	go func() {
		_, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: id, Process: info,
			Relay: true, ZombieAfter: time.Minute, TokenBudget: 1000, WatchHeartbeat: timeout})
		done <- err
	}()
	shownN := func() int { _, shown := rep.relays(); return len(shown) }

	for i := range 10 {
		require.Eventually(t, func() bool { return a.Beats.Offer(id, HostHeartbeat{TokensUsed: int64(i)}) }, 5*time.Second, 5*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
	}
	assert.GreaterOrEqual(t, shownN(), 10, "every heartbeat is shown")
	assert.Zero(t, sdkBeats.Load(), "no SDK heartbeat while the watch shows its own")

	// A quiet agent: shown all the same, each time before the timeout.
	quiet := time.Now()
	time.Sleep(3 * time.Second)
	assert.Less(t, rep.longestGap(quiet), timeout-100*time.Millisecond, "a quiet agent's watch must reach the server within its heartbeat timeout")
	assert.Zero(t, sdkBeats.Load())

	// Shows fail: the SDK's heartbeat goes instead, once per 1.6 s.
	rep.failShows(errors.New("the server is away"))
	require.Eventually(t, func() bool { return sdkBeats.Load() > 0 }, 2*time.Second, 10*time.Millisecond, "no SDK heartbeat when the show failed")
	time.Sleep(2500 * time.Millisecond)
	assert.LessOrEqual(t, sdkBeats.Load(), int64(3), "a failing server is not sent a heartbeat per poll")
	rep.failShows(nil)

	killTestGroup(info.PGID)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with the process")
	}
}

// TestBoardHoldsWhatAProcessSendsBeforeItsWatch: a process has its place
// from its start, so what its agent sends before a watch runs is held (for
// the watch, and for the lifecycle's backstop), not signalled; a watch
// cancelled leaves it holding for the next; an ended process, a stop and a
// watch that relays nothing give it up.
func TestBoardHoldsWhatAProcessSendsBeforeItsWatch(t *testing.T) {
	const id, proc = "worker-x-1", "aaaaaaaaaaaaaaaa"
	b := NewHeartbeatBoard()
	b.Expect(id, proc, time.Minute)
	require.False(t, b.Offer(id, HostHeartbeat{Process: "bbbbbbbbbbbbbbbb"}), "another process's heartbeat is signalled")
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 5}), "held before its watch runs")
	held := b.held(id, proc)
	require.NotNil(t, held, "the backstop's question finds it")
	assert.Equal(t, int64(5), held.TokensUsed)
	b.Expect(id, proc, time.Minute)
	require.NotNil(t, b.held(id, proc), "expected again: what it holds is kept")

	s := b.attach(id, proc, 40, time.Minute)
	require.NotNil(t, s.last(), "the watch takes over what was held")
	assert.Equal(t, int64(1), s.last().Count)
	assert.Equal(t, int64(40), s.last().PriorTokens, "with what the earlier processes used")
	s.detach(false)
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 6}), "a cancelled watch (continue-as-new) leaves the place holding")
	again := b.attach(id, proc, 40, time.Minute)
	assert.Equal(t, int64(2), again.last().Count)
	again.detach(true)
	require.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 7}), "the process ended")

	b.Expect(id, proc, time.Minute)
	b.Forget(id, "bbbbbbbbbbbbbbbb")
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 8}), "another process's stop")
	b.Forget(id, proc)
	require.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 9}), "stopped")

	b.Expect(id, proc, time.Minute)
	require.Nil(t, b.release(id, proc), "nothing held, nothing to pass on")
	b.Expect(id, proc, time.Minute)
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 10}))
	passed := b.release(id, proc)
	require.NotNil(t, passed, "a watch that relays nothing passes on what was held")
	assert.Equal(t, int64(10), passed.TokensUsed)
	require.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 11}), "and its agent signals from then on")

	w := b.attach(id, proc, 0, time.Minute)
	require.Nil(t, b.release(id, proc), "a relaying watch's place is not given up")
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 12}))
	w.detach(true)
}

// TestStartedProcessIsHeldUntilItsStop: StartProcess gives the process its
// place, before any watch; StopProcess gives it up.
func TestStartedProcessIsHeldUntilItsStop(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sleep", "60"}})
	a.Beats = NewHeartbeatBoard()
	id := uniqueWorkerID("probe")
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1", HoldBeatsFor: time.Minute})
	require.True(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 3}), "held from the start")
	got, err := a.HeldHeartbeat(context.Background(), HeldInput{WorkerID: id, Process: ProcessTag(info.Token)})
	require.NoError(t, err)
	require.NotNil(t, got.Heartbeat)
	assert.Equal(t, int64(3), got.Heartbeat.TokensUsed)
	_, err = env.ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info, Grace: time.Second})
	require.NoError(t, err)
	require.False(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 4}), "given up with the stop")
}

// TestWatchWithoutRelayPassesOnWhatWasHeld: the watch of a lifecycle that
// takes no relayed heartbeats gives the place up at once and passes on the
// heartbeat held before it ran; the agent signals from then on.
func TestWatchWithoutRelayPassesOnWhatWasHeld(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sleep", "60"}})
	rep := &fakeReporter{}
	a.Reporter, a.Beats = rep, NewHeartbeatBoard()
	id := uniqueWorkerID("probe")
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1", HoldBeatsFor: time.Minute})
	require.True(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 21, Message: "before the watch"}))
	done := make(chan error, 1)
	go func() {
		_, err := newActivityEnv(a).ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: id, Process: info, WatchHeartbeat: time.Minute, ZombieAfter: time.Minute})
		done <- err
	}()
	require.Eventually(t, func() bool { got, _ := rep.relays(); return len(got) == 1 }, 5*time.Second, 10*time.Millisecond, "passed on")
	got, _ := rep.relays()
	assert.Equal(t, int64(21), got[0].hb.TokensUsed)
	assert.Equal(t, "before the watch", got[0].hb.Message)
	require.False(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 22}), "signalled from then on")
	_, err := newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info})
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not see the end")
	}
	got, _ = rep.relays()
	assert.Len(t, got, 1, "nothing more relayed")
}

// TestRestartedProgramHoldsItsRecordedProcesses: a worker program started
// again gives each live process of its records its place (ExpectRecorded),
// so that its agent's heartbeats wait for the watch that comes back; a
// record of a process that is gone gets none.
func TestRestartedProgramHoldsItsRecordedProcesses(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sleep", "60"}, "brief": {"true"}})
	a.StateDir = t.TempDir()
	env := newActivityEnv(a)
	id := uniqueWorkerID("probe")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1", HoldBeatsFor: time.Minute})
	t.Cleanup(func() {
		_, _ = newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info})
	})
	old := uniqueWorkerID("probe")
	oldInfo := mustStart(t, env, a, StartInput{WorkerID: old, WorkerType: "probe", TaskID: "task-3"})
	t.Cleanup(func() {
		_, _ = newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: old, Process: oldInfo})
	})
	brief := uniqueWorkerID("brief")
	briefInfo := mustStart(t, env, a, StartInput{WorkerID: brief, WorkerType: "brief", TaskID: "task-2", HoldBeatsFor: time.Minute})
	require.Eventually(t, func() bool { running, _ := sameProcessRunning(briefInfo.PID, briefInfo.StartTicks); return !running }, 5*time.Second, 10*time.Millisecond)

	a.Beats = NewHeartbeatBoard() // the board of the program started again
	assert.Equal(t, 1, ExpectRecorded(a))
	assert.True(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 1}), "held for the watch that comes back")
	assert.False(t, a.Beats.Offer(brief, HostHeartbeat{TokensUsed: 1}), "its process is gone")
	assert.False(t, a.Beats.Offer(old, HostHeartbeat{TokensUsed: 1}), "its lifecycle holds none: signalled, as before")
}

// TestLifecycleThatHoldsNoneIsSignalledUntilItsWatch: a process started
// for a lifecycle that may not take relays (an earlier release's, or a
// fleet upgraded with --compat r7) gets no place: its agent's heartbeats
// are signalled as they come, since it never asks its host for them.
func TestLifecycleThatHoldsNoneIsSignalledUntilItsWatch(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"probe": {"sleep", "60"}})
	a.Beats = NewHeartbeatBoard()
	env := newActivityEnv(a)
	id := uniqueWorkerID("probe")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "probe", TaskID: "task-1"})
	t.Cleanup(func() {
		_, _ = newActivityEnv(a).ExecuteActivity(a.StopProcess, StopInput{WorkerID: id, Process: info})
	})
	assert.False(t, a.Beats.Offer(id, HostHeartbeat{TokensUsed: 1}))
	assert.Zero(t, info.HoldBeatsFor)
}

// TestPlaceWithoutAWatchIsHeldForItsTimeOnly: a place nobody watches (a
// lifecycle terminated with its process left running, a process that died
// before its watch ran) is given up once held for its time, so that the
// agent's next heartbeat is signalled and hears that its lifecycle ended;
// the host's metric of silence counts only watched places.
func TestPlaceWithoutAWatchIsHeldForItsTimeOnly(t *testing.T) {
	const id, proc = "worker-x-1", "aaaaaaaaaaaaaaaa"
	b := NewHeartbeatBoard()
	// timesUp makes the place of id held past its time.
	timesUp := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.slots[id].holdUntil = time.Now().Add(-time.Millisecond)
	}
	b.Expect(id, proc, time.Minute)
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 1}))
	_, ok := b.OldestHeld(time.Now())
	assert.False(t, ok, "no watch: not in the host's metric")
	timesUp()
	assert.Nil(t, b.held(id, proc), "held past its time")
	assert.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 2}))

	s := b.attach(id, proc, 0, time.Minute)
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 3}))
	_, ok = b.OldestHeld(time.Now())
	assert.True(t, ok)
	s.detach(false)
	require.True(t, b.Offer(id, HostHeartbeat{TokensUsed: 4}), "a cancelled watch's place holds for the next")
	timesUp()
	assert.Nil(t, b.Stopping(id, proc), "nothing held past its time is relayed at a stop")
	again := b.attach(id, proc, 0, time.Minute)
	assert.Nil(t, again.last(), "a watch takes over nothing held past its time")
	again.detach(true)

	b.Expect(id, proc, time.Minute)
	timesUp()
	b.Expect("worker-y-1", "bbbbbbbbbbbbbbbb", time.Minute)
	b.mu.Lock()
	_, kept := b.slots[id]
	b.mu.Unlock()
	assert.False(t, kept, "a place past its time is removed even if nothing is offered to it")

	b.Expect(id, proc, 0)
	assert.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 6}), "held for no time: none")
	w := b.attach(id, proc, 0, 0)
	w.detach(false)
	assert.False(t, b.Offer(id, HostHeartbeat{TokensUsed: 7}), "a watch of a process held for no time leaves nothing behind")
}
