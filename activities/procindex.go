package activities

import (
	"sync"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// procIndexEvery is how old a scan of the host's /proc may be for sampling
// and the orphan sweep of the workers contained by process group and
// token: each scan reads every process's stat and environment, so one
// scan a second serves every worker's samples, instead of one scan per
// worker per sample.
const procIndexEvery = time.Second

// freshScanEvery is the most often a stop's need for a scan begun after
// its signal makes a new one: concurrent stops share it, and a stop of a
// process that ends on SIGTERM still ends within a fraction of a second.
const freshScanEvery = 100 * time.Millisecond

// procIndex is the host's shared scan of /proc. Workers with a cgroup do
// not need it: their cgroup lists their members.
type procIndex struct {
	mu sync.Mutex
	// every is the age of a scan that recent accepts; minGap the least
	// time between two scans.
	every, minGap time.Duration
	snap          *procSnapshot
	// scans counts the scans made, for tests and the benchmark.
	scans int
}

// procSnapshot is one scan: every process, and which carry which token.
type procSnapshot struct {
	// at is when the scan began: it shows every process started before.
	at     time.Time
	procs  []procStat
	tokens map[string][]int // token → indexes in procs
}

// hostProcs is this program's index: there is one /proc per host.
var hostProcs = &procIndex{every: procIndexEvery, minGap: freshScanEvery}

// snapshot returns a scan begun no earlier than notBefore: the shared one
// when it is that recent, else a new one, made no sooner than every after
// minGap after the previous. A stop asks for one begun after its signal; a
// sample for one at most every old.
func (x *procIndex) snapshot(notBefore time.Time) (*procSnapshot, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.snap != nil && !x.snap.at.Before(notBefore) {
		return x.snap, nil
	}
	if x.snap != nil {
		// Callers waiting meanwhile take this scan rather than make theirs.
		if wait := x.minGap - time.Since(x.snap.at); wait > 0 {
			time.Sleep(wait)
		}
	}
	snap, err := scanProcs()
	if err != nil {
		return nil, err
	}
	x.snap = snap
	x.scans++
	return snap, nil
}

// fresh is a scan begun now or later.
func (x *procIndex) fresh() (*procSnapshot, error) { return x.snapshot(time.Now()) }

// recent is a scan at most every old.
func (x *procIndex) recent() (*procSnapshot, error) { return x.snapshot(time.Now().Add(-x.every)) }

// scanProcs reads every process and the token in its environment.
func scanProcs() (*procSnapshot, error) {
	at := time.Now()
	procs, err := allProcs()
	if err != nil {
		return nil, err
	}
	snap := &procSnapshot{at: at, procs: procs, tokens: map[string][]int{}}
	for i, st := range procs {
		if token := procfs.EnvValue(st.PID, tokenEnv); token != "" {
			snap.tokens[token] = append(snap.tokens[token], i)
		}
	}
	return snap, nil
}
