package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

// workerIDPattern is what a worker id must look like before it becomes part
// of a path: no '/', no '.', so LogDir/<worker_id> cannot escape LogDir.
var workerIDPattern = regexp.MustCompile(`^worker-[a-z]+-[0-9A-Za-z]+$`)

// runIDPattern is a Temporal run ID (a UUID), safe in a file name.
var runIDPattern = regexp.MustCompile(`^[0-9a-fA-F-]{1,64}$`)

const (
	// stopPoll is how often StopProcess looks whether the group is empty.
	stopPoll = 50 * time.Millisecond
	// killWait bounds the wait after SIGKILL; only a process stuck in the
	// kernel (uninterruptible sleep) outlasts it.
	killWait = 5 * time.Second
	// leftoverGrace is what a process left by an ended lifecycle gets to
	// end on SIGTERM before a new one of the same worker id is started.
	leftoverGrace = 5 * time.Second
	// logFileName is the file each worker's output is appended to.
	logFileName = "worker.log"
)

// StartProcess starts the worker's process from the registry's command for
// its type, as the leader of a new process group, with its output appended
// to LogDir/<worker_id>/worker.log.
//
// A retry after a lost result must not start a second process, so when the
// table already has a live process for the worker id, that one is returned.
// Neither may a restart of this program: the record in StateDir of a process
// that is provably still the one started (PID, start ticks, token) is
// returned instead of spawning again.
func (a *HostActivities) StartProcess(ctx context.Context, in StartInput) (ProcessInfo, error) {
	if !workerIDPattern.MatchString(in.WorkerID) {
		return ProcessInfo{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("invalid worker id %q: must match %s", in.WorkerID, workerIDPattern),
			ErrTypeSpawnFailed, nil)
	}
	if a.Procs == nil || a.Registry == nil || a.LogDir == "" || (len(a.Monitor) > 0 && a.StateDir == "") {
		// A wiring mistake of the worker program: retrying cannot fix it.
		return ProcessInfo{}, temporal.NewNonRetryableApplicationError(
			"activities are not configured to start processes (Procs, Registry and LogDir are required, and StateDir with a Monitor)",
			ErrTypeSpawnFailed, nil)
	}
	typ, err := a.Registry.Lookup(in.WorkerType)
	if err != nil {
		return ProcessInfo{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownWorkerType, nil)
	}
	argv := typ.Argv(in.WorkerID, in.TaskID)
	if e := a.Procs.entryFor(in.WorkerID); e != nil && !e.exited() && !sameLease(e.info.Lease, in.Lease) {
		// An earlier lifecycle with this worker id ended and left its
		// process running; it must not go on beside the new one.
		if err := a.stopLeftover(ctx, in.WorkerID, e.info); err != nil {
			return ProcessInfo{}, err
		}
	}
	if e := a.Procs.entryFor(in.WorkerID); e == nil || e.exited() {
		// This worker program may have restarted since the process was
		// started: its record says so, and the process is taken back.
		p, found, err := a.readopt(in.WorkerID)
		switch {
		case err != nil:
			return ProcessInfo{}, err // retried: never start one beside it
		case found && sameLease(p.Lease, in.Lease):
			if in.HoldBeatsFor > p.HoldBeatsFor {
				// Recorded by a release before held heartbeats: its next
				// watch, and a restart of this program, hold them too.
				p.HoldBeatsFor = in.HoldBeatsFor
				if err := a.saveState(in.WorkerID, p); err != nil {
					return ProcessInfo{}, fmt.Errorf("record the process of %s: %w", in.WorkerID, err)
				}
			}
			a.Beats.Expect(in.WorkerID, ProcessTag(p.Token), p.HoldBeatsFor)
			return p, nil
		case found:
			if err := a.stopLeftover(ctx, in.WorkerID, p); err != nil {
				return ProcessInfo{}, err
			}
		}
	}
	return a.Procs.startOnce(in.WorkerID, in.Lease, func() (func() ExitStatus, ProcessInfo, error) {
		return a.spawn(in, typ, argv)
	})
}

// sameLease reports whether a process started under the stored lease
// belongs to the lifecycle asking with the incoming one. An empty incoming
// lease comes from an activity scheduled before leases existed, by the
// lifecycle that started the process, and matches; an empty stored lease
// is some earlier lifecycle's and does not.
func sameLease(stored, incoming string) bool { return incoming == "" || stored == incoming }

// stopLeftover stops the process an ended lifecycle left behind under the
// same worker id, before a new one is started for it.
func (a *HostActivities) stopLeftover(ctx context.Context, workerID string, p ProcessInfo) error {
	activity.GetLogger(ctx).Warn("Stopping a process left by an earlier lifecycle", "worker_id", workerID, "pid", p.PID, "lease", p.Lease)
	if _, err := a.StopProcess(ctx, StopInput{WorkerID: workerID, Process: p, Grace: leftoverGrace}); err != nil {
		return fmt.Errorf("stop the process pid %d left by an earlier lifecycle of %s: %w", p.PID, workerID, err)
	}
	return nil
}

func (a *HostActivities) spawn(in StartInput, typ workertypes.Type, argv []string) (func() ExitStatus, ProcessInfo, error) {
	typeName := typ.Name
	limits := typ.Resources.Limits()
	if limits.Any() && (a.Limiter == nil || a.CgroupRoot == "" || (!a.Limiter.V2 && len(a.Monitor) == 0)) {
		// The worker program refuses such a types file at start; this is
		// for one wired without that check.
		return nil, ProcessInfo{}, spawnFailed(fmt.Sprintf("worker type %q sets resource limits, which host %s cannot apply (it needs cgroups, and a monitor on a hybrid host)", typeName, a.Host))
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, ProcessInfo{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("worker type %q has an empty command", typeName), ErrTypeSpawnFailed, nil)
	}
	// An absolute path stays valid for status and log readers whatever the
	// working directory of the worker program.
	dir, err := filepath.Abs(filepath.Join(a.LogDir, in.WorkerID))
	if err != nil {
		return nil, ProcessInfo{}, fmt.Errorf("log folder of %s: %w", in.WorkerID, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, ProcessInfo{}, fmt.Errorf("create log folder of %s: %w", in.WorkerID, err)
	}
	logPath := filepath.Join(dir, logFileName)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, ProcessInfo{}, fmt.Errorf("open log of %s: %w", in.WorkerID, err)
	}
	// The child gets its own copy of the descriptor at fork.
	defer logFile.Close()

	token, err := newToken()
	if err != nil {
		return nil, ProcessInfo{}, fmt.Errorf("process token of %s: %w", in.WorkerID, err)
	}
	// Recorded before it exists: should this program die between the start
	// and the full record, its successor finds the process by its token
	// instead of starting a second one.
	info := ProcessInfo{Host: a.Host, LogPath: logPath, StartedAt: time.Now(), Token: token, Lease: in.Lease, WorkerType: typeName,
		HoldBeatsFor: in.HoldBeatsFor}
	if err := a.saveState(in.WorkerID, info); err != nil {
		return nil, ProcessInfo{}, fmt.Errorf("record the start of %s: %w", in.WorkerID, err)
	}
	// The worker's own entries, on top of this program's environment.
	env := append([]string{},
		"WORKER_ID="+in.WorkerID,
		"TASK_ID="+in.TaskID,
		"WORKER_TYPE="+typeName,
		"TEMPORAL_ADDRESS="+a.TemporalAddress,
		"TEMPORAL_NAMESPACE="+a.TemporalNamespace,
		ProcessEnv+"="+tokenTag(token),
	)
	// Set even when empty: a value this program inherited (its own
	// --heartbeat-socket setting, "off") is no socket of the agent's.
	env = append(env, HeartbeatSocketEnv+"="+a.HeartbeatSocket)
	if a.CgroupRoot != "" {
		// Named by the start, not only the worker: a leftover of an earlier
		// lifecycle of the same worker id never shares it.
		if info.Cgroup, err = cgroup.Create(a.CgroupRoot, in.WorkerID+"-"+tokenTag(token)); err != nil {
			a.forgetState(in.WorkerID, info)
			return nil, ProcessInfo{}, err
		}
		if limits.Any() {
			lim := cgroup.Limits{MemoryBytes: limits.MemoryBytes, Processes: limits.Processes, CPUs: limits.CPUs}
			if info.LimitCgroups, err = a.Limiter.Apply(info.Cgroup, lim); err != nil {
				_ = cgroup.Remove(info.Cgroup)
				a.forgetState(in.WorkerID, info)
				return nil, ProcessInfo{}, fmt.Errorf("limits of %s: %w", in.WorkerID, err)
			}
		}
		if err := a.saveState(in.WorkerID, info); err != nil {
			_ = cgroup.Remove(info.Cgroup)
			return nil, ProcessInfo{}, fmt.Errorf("record the start of %s: %w", in.WorkerID, err)
		}
	}
	var started startedProcess
	if len(a.Monitor) > 0 {
		started, err = a.startMonitored(in.WorkerID, &info, argv, env, logFile)
	} else {
		started, err = startDirect(info, argv, append(append(os.Environ(), env...), tokenEnv+"="+token), logFile)
	}
	if err != nil {
		a.forgetState(in.WorkerID, info)
		return nil, ProcessInfo{}, err
	}
	failpoint("after-process-start")
	info.PID, info.PGID, info.StartTicks = started.pid, started.pid, started.ticks
	if err := a.saveState(in.WorkerID, info); err != nil {
		// Unrecorded, it could be spawned twice after a restart: undo.
		started.abort()
		a.forgetState(in.WorkerID, info)
		return nil, ProcessInfo{}, fmt.Errorf("record process of %s: %w", in.WorkerID, err)
	}
	// Its agent may heartbeat before its watch runs.
	a.Beats.Expect(in.WorkerID, ProcessTag(token), in.HoldBeatsFor)
	return started.wait, info, nil
}

// spawnFailed is a start that retrying cannot fix.
func spawnFailed(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeSpawnFailed, nil)
}

// spawnError makes a command that cannot be run a non-retryable failure, and
// leaves anything else (fork limits, memory) to Temporal's retries.
func spawnError(command string, err error) error {
	msg := fmt.Sprintf("start worker command %q: %v", command, err)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EISDIR) {
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeSpawnFailed, err)
	}
	return fmt.Errorf("%s", msg)
}

// WatchProcess waits until the process ends and returns how it ended,
// heartbeating every WatchPoll so that Temporal notices a dead worker program.
// Every in.SampleEvery it also measures the process tree for the lifecycle's
// health score and, for output-heartbeat workers, heartbeats when the log
// grew.
//
// A process this program started is reaped by the table, so its exit status
// is exact. A process started before a restart of this program is not our
// child any more: it is polled through /proc, and its end is the one its
// monitor wrote; it is Lost, exit code -1, only when it had no monitor or
// its monitor was killed before it could write.
func (a *HostActivities) WatchProcess(ctx context.Context, in WatchInput) (ExitStatus, error) {
	// Aside: the record's lock may be held by a re-adoption for seconds,
	// which must not hold up the watch's first heartbeat.
	go a.recordFenceLimits(in.WorkerID, in.Process, FenceLimits{HostLossAfter: in.HostLossAfter, WatchHeartbeat: in.WatchHeartbeat, Grace: in.Grace})
	return a.watch(ctx, in)
}

func (a *HostActivities) watch(ctx context.Context, in WatchInput) (ExitStatus, error) {
	p := in.Process
	tick := time.NewTicker(a.watchPoll())
	defer tick.Stop()
	var sampleC <-chan time.Time
	var obs *observer
	if in.SampleEvery > 0 && a.Reporter != nil {
		obs = newObserver(ctx, a, in)
		sampleTick := time.NewTicker(in.SampleEvery)
		defer sampleTick.Stop()
		sampleC = sampleTick.C
	}

	r := a.newRelay(ctx, in)
	gone := false
	defer func() { r.close(gone) }()
	// The end carries the agent's last word the lifecycle has not had.
	ended := func(st ExitStatus) (ExitStatus, error) {
		gone = true
		st = a.judge(in.WorkerID, p, st)
		st.LastHeartbeat = r.unsent()
		return st, nil
	}

	e := a.Procs.find(p)
	var done <-chan struct{}
	if e != nil {
		done = e.done
	}
	for {
		if e == nil {
			running, err := sameProcessRunning(p.PID, p.StartTicks)
			if err != nil {
				return ExitStatus{}, fmt.Errorf("watch pid %d: %w", p.PID, err)
			}
			if !running {
				return ended(endAfterGone(p))
			}
		}
		select {
		case <-done:
			return ended(e.status)
		case <-ctx.Done():
			aside(r.flush)
			return ExitStatus{}, ctx.Err()
		case <-tick.C:
			aside(func() { r.beat(ctx); r.tick(ctx) })
		case <-r.wake():
			aside(func() { r.heard(ctx) })
		case <-r.silence():
			aside(func() { r.tick(ctx) })
		case <-sampleC:
			aside(func() { obs.observe(ctx) })
		}
	}
}

// aside runs f on a goroutine of its own and waits for it. A watch lives as
// long as its process, one per live process, parked nearly all the time;
// what it does on a wake-up (a call to the server, through gRPC's deep
// stack; a sample of the process tree) would grow its own stack, which the
// runtime then keeps, or shrinks only by half per collection, between two
// wake-ups. Done aside, the stack that grows is one that ends with the call.
// A panic in f is raised again in the caller, where the SDK recovers it as
// the activity's failure, instead of ending the worker program, with the
// stack where it happened (the SDK's own is the caller's).
func aside(f func()) {
	done := make(chan struct{})
	var (
		raised   any
		stack    []byte
		finished bool
	)
	go func() {
		defer func() {
			if !finished {
				raised, stack = recover(), debug.Stack()
				if raised == nil {
					raised = "runtime.Goexit"
				}
			}
			close(done)
		}()
		f()
		finished = true
	}()
	<-done
	if !finished {
		panic(asidePanic{value: raised, stack: stack})
	}
}

// asidePanic is a panic of work done aside, raised again in its caller.
type asidePanic struct {
	value any
	stack []byte
}

func (p asidePanic) Error() string { return fmt.Sprintf("%v\n%s", p.value, p.stack) }

// judge adds what the exit rules of the process's type make of its end,
// and whether this host's fence stopped it. A process recorded without its
// type (by an earlier release) is left to the lifecycle's own judgement
// unless fenced; a type this host no longer knows gets the defaults.
func (a *HostActivities) judge(workerID string, p ProcessInfo, st ExitStatus) ExitStatus {
	if a.fencedEnd(workerID, p) {
		// Also for a process of an earlier release: judged by the
		// defaults, its fenced end is not taken for a crash.
		st.Fenced = true
	}
	if p.WorkerType == "" && !st.Fenced {
		return st
	}
	var typ workertypes.Type
	if a.Registry != nil && p.WorkerType != "" {
		typ, _ = a.Registry.Lookup(p.WorkerType)
	}
	st.Action, st.Rule = typ.ExitAction(workertypes.End{ExitCode: st.ExitCode, OOM: st.OOM, Lost: st.Lost, Fenced: st.Fenced})
	return st
}

func (a *HostActivities) watchPoll() time.Duration {
	if a.WatchPoll > 0 {
		return a.WatchPoll
	}
	return time.Second
}

// StopProcess stops the whole process tree of in.Process: SIGTERM, up to
// in.Grace for it to empty, then SIGKILL until nothing is left. It signals
// only processes it can prove are the worker's (its group while the group is
// provably ours, its token, their descendants), because a PID or PGID can be
// reused by an unrelated process once ours is gone.
func (a *HostActivities) StopProcess(ctx context.Context, in StopInput) (StopResult, error) {
	p := in.Process
	// A zero ProcessInfo means nothing was started. PGID 1 or our own group
	// would make kill(2) hit init or this program's group, never a worker.
	if p.PID <= 0 || p.PGID <= 1 || p.PGID == syscall.Getpgrp() {
		return StopResult{AlreadyGone: true}, nil
	}
	// What the watch holds is relayed now, before the process is told to
	// stop, and the agent's heartbeats from here on (a last count on
	// SIGTERM) are signalled by the socket before it exits.
	if held := a.Beats.Stopping(in.WorkerID, ProcessTag(p.Token)); held != nil && a.Reporter != nil {
		if err := a.Reporter.RelayHeartbeat(ctx, in.WorkerID, *held, held.ageAt(time.Now())); err != nil {
			activity.GetLogger(ctx).Warn("Relaying the heartbeat the watch held failed", "worker_id", in.WorkerID, "error", err)
		}
	}
	res, err := a.stopTree(ctx, in, func() { activity.RecordHeartbeat(ctx) })
	if err != nil {
		return StopResult{}, err
	}
	a.Beats.Forget(in.WorkerID, ProcessTag(p.Token))
	a.forgetState(in.WorkerID, p)
	return res, nil
}

// stopTree is StopProcess without forgetting the process's record, which
// the fence keeps so that the watch reports the end as fenced. beat is
// called on every poll of the wait.
func (a *HostActivities) stopTree(ctx context.Context, in StopInput, beat func()) (StopResult, error) {
	p := in.Process
	groupOurs, err := a.ownsGroup(in.WorkerID, p)
	if err != nil {
		return StopResult{}, err
	}
	members, err := treeMembers(p, groupOurs)
	if err != nil {
		return StopResult{}, err
	}
	if len(members) == 0 {
		return StopResult{AlreadyGone: true}, nil
	}
	if in.Grace > 0 {
		if err := signalTree(p, groupOurs, members, syscall.SIGTERM); err != nil {
			return StopResult{}, err
		}
		empty, err := waitTreeEmpty(ctx, p, groupOurs, in.Grace, beat, nil)
		if err != nil {
			return StopResult{}, err
		}
		if empty {
			return StopResult{}, nil
		}
	}
	// Kill again on every poll: a member may fork between two scans.
	kill := func(members []procStat) { _ = signalTree(p, groupOurs, members, syscall.SIGKILL) }
	empty, err := waitTreeEmpty(ctx, p, groupOurs, killWait, beat, kill)
	if err != nil {
		return StopResult{}, err
	}
	if !empty {
		// Retryable: a retry finds the tree still running and kills again.
		return StopResult{}, fmt.Errorf("process tree of %s (pid %d) still running %s after SIGKILL", in.WorkerID, p.PID, killWait)
	}
	return StopResult{Killed: true}, nil
}

// ownsGroup reports whether process group p.PGID is the one StartProcess
// created for workerID.
func (a *HostActivities) ownsGroup(workerID string, p ProcessInfo) (bool, error) {
	st, err := readProcStat(p.PID)
	switch {
	case err == nil && st.StartTicks == p.StartTicks:
		// The leader (maybe an unreaped zombie) still holds its PID, so the
		// group id it is in cannot have been handed to anyone else.
		return st.PGRP == p.PGID, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return false, err
	}

	// The leader is gone. Its children may still run in the group, but only
	// this table can vouch for that: from the outside a group with the same
	// id may be a stranger's that got the recycled number.
	e := a.Procs.entryFor(workerID)
	if e == nil || e.info.PID != p.PID || e.info.StartTicks != p.StartTicks || e.info.PGID != p.PGID {
		return false, nil
	}
	if a.Procs.claimsGroup(p.PGID, workerID) {
		// The number went to another of our workers' new process.
		return false, nil
	}
	// A group never spans sessions, and our workers stay in the session
	// they were started in, this program's or their monitor's (a worker
	// calling setsid leaves the group). So a group in another session
	// reused the id after ours emptied.
	members, err := groupMembers(p.PGID)
	if err != nil {
		return false, err
	}
	session := 0
	if p.Monitor != nil {
		session = p.Monitor.PID // it called setsid
	} else {
		self, err := readProcStat(os.Getpid())
		if err != nil {
			return false, fmt.Errorf("read own session: %w", err)
		}
		session = self.Session
	}
	for _, m := range members {
		if m.Session != session {
			return false, nil
		}
	}
	return true, nil
}

func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("refusing to signal process group %d", pgid)
	}
	err := syscall.Kill(-pgid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send %s to process group %d: %w", signalName(sig), pgid, err)
	}
	return nil
}

// waitTreeEmpty polls until the worker's tree has no live member or
// timeout passes, and reports whether it emptied. each, if set, is applied
// to the members found on every poll.
func waitTreeEmpty(ctx context.Context, p ProcessInfo, groupOurs bool, timeout time.Duration, beat func(), each func([]procStat)) (bool, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(stopPoll)
	defer tick.Stop()
	for {
		members, err := treeMembers(p, groupOurs)
		if err != nil {
			return false, err
		}
		if len(members) == 0 {
			return true, nil
		}
		if each != nil {
			each(members)
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		beat()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
	}
}

// exitStatusOf turns a reaped process's state into an ExitStatus, with the
// shell's 128+N convention for a death by signal N.
func exitStatusOf(state *os.ProcessState) ExitStatus {
	code, sig := monitor.StatusOf(state)
	return ExitStatus{ExitCode: code, Signal: sig}
}

// signalName is the conventional name of sig ("SIGKILL"); syscall's own
// String gives descriptions ("killed") instead.
func signalName(sig syscall.Signal) string { return monitor.SignalName(sig) }
