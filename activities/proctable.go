package activities

import (
	"sort"
	"sync"
)

// ProcessTable tracks the worker processes this worker program started. It
// owns reaping them: one goroutine per process waits for it, so its exit
// status is known exactly and it never lingers as a zombie.
//
// The table lives only as long as the worker program. Processes that outlive
// a restart are found again through /proc by PID and start ticks; their exit
// status is the one their monitor wrote, where they have one.
type ProcessTable struct {
	// spawnMu serializes check-then-start, so that a retried StartProcess
	// racing its own first attempt cannot start a second process.
	spawnMu sync.Mutex

	mu sync.Mutex
	// entries holds the latest process of each worker id. An exited entry
	// is kept (with its status) until a new process for that id replaces it.
	entries map[string]*procEntry
}

type procEntry struct {
	workerID string
	info     ProcessInfo
	done     chan struct{}
	// sample is the watch's latest measure of its process tree, for the
	// host's metrics (Usage); guarded by the table's mu.
	sample *ResourceSample
	// status is written once by the reaper before done is closed and read
	// only after done is closed, so it needs no lock.
	status ExitStatus
}

func (e *procEntry) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// NewProcessTable returns an empty table.
func NewProcessTable() *ProcessTable {
	return &ProcessTable{entries: map[string]*procEntry{}}
}

// Live returns the processes that have not exited yet, sorted by worker id.
func (t *ProcessTable) Live() []ProcessInfo {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	live := make([]*procEntry, 0, len(t.entries))
	for _, e := range t.entries {
		if !e.exited() {
			live = append(live, e)
		}
	}
	t.mu.Unlock()
	sort.Slice(live, func(i, j int) bool { return live[i].workerID < live[j].workerID })
	infos := make([]ProcessInfo, len(live))
	for i, e := range live {
		infos[i] = e.info
	}
	return infos
}

// noteSample keeps the watch's latest measure of a worker's process tree.
func (t *ProcessTable) noteSample(workerID string, s ResourceSample) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[workerID]; e != nil {
		e.sample = &s
	}
}

// HostUsage is what the live worker processes of a host use, summed over
// their process trees as their watches last measured them (every few
// seconds): what the host's metrics show.
type HostUsage struct {
	Processes  int
	CPUPercent float64
	RSSBytes   int64
}

// Usage sums the latest samples of the live processes; one not sampled yet
// counts as a process using nothing.
func (t *ProcessTable) Usage() HostUsage {
	var u HostUsage
	if t == nil {
		return u
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.entries {
		if e.exited() {
			continue
		}
		u.Processes++
		if e.sample != nil {
			u.CPUPercent += e.sample.CPUPercent
			u.RSSBytes += e.sample.RSSBytes
		}
	}
	return u
}

// entryFor returns the latest entry of a worker id, exited or not.
func (t *ProcessTable) entryFor(workerID string) *procEntry {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entries[workerID]
}

// find returns the entry of the process p names (same PID and start ticks),
// exited or not.
func (t *ProcessTable) find(p ProcessInfo) *procEntry {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.entries {
		if e.info.PID == p.PID && e.info.StartTicks == p.StartTicks {
			return e
		}
	}
	return nil
}

// claimsGroup reports whether a live entry other than workerID's leads
// process group pgid; such a group belongs to another worker.
func (t *ProcessTable) claimsGroup(pgid int, exceptWorkerID string) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.entries {
		if id != exceptWorkerID && e.info.PGID == pgid && !e.exited() {
			return true
		}
	}
	return false
}

// withoutStarts runs fn while no start is in flight in this table.
func (t *ProcessTable) withoutStarts(fn func()) {
	if t != nil {
		t.spawnMu.Lock()
		defer t.spawnMu.Unlock()
	}
	fn()
}

// startOnce returns the live process of workerID started under lease if
// there is one, and otherwise calls spawn and starts reaping the process it
// started. spawn returns, beside the process, the function that waits for
// its end.
func (t *ProcessTable) startOnce(workerID, lease string, spawn func() (func() ExitStatus, ProcessInfo, error)) (ProcessInfo, error) {
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	if e := t.entryFor(workerID); e != nil && !e.exited() && sameLease(e.info.Lease, lease) {
		return e.info, nil
	}
	wait, info, err := spawn()
	if err != nil {
		return ProcessInfo{}, err
	}
	e := &procEntry{workerID: workerID, info: info, done: make(chan struct{})}
	t.mu.Lock()
	if t.entries == nil {
		t.entries = map[string]*procEntry{}
	}
	t.entries[workerID] = e
	t.mu.Unlock()
	go func() {
		e.status = wait()
		close(e.done)
	}()
	return info, nil
}
