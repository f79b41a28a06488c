package activities

import (
	"context"
	"os"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/commit-relay/worker-lifecycle/internal/health"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// reportEvery bounds how stale the lifecycle's sample may get while nothing
// changes; a change of band is reported at once.
const reportEvery = 5 * time.Minute

// observer measures one worker's process tree for the watcher and decides
// what the lifecycle needs to hear of it. Signals to the lifecycle cost
// history events, so only what can change the health score is sent.
type observer struct {
	a  *HostActivities
	in WatchInput

	// CPU is a rate: each sample is measured against the previous one.
	prevTicks map[procKey]uint64
	prevAt    time.Time
	// reported is the last sample the lifecycle received, nil before one.
	reported *ResourceSample
	reportAt time.Time
	logSize  int64
}

// procKey names one process for the life of the machine, so that CPU ticks
// of a recycled PID are never subtracted from another process's.
type procKey struct {
	pid   int
	start uint64
}

// newObserver takes the baselines at the start of the watch: the first
// interval then yields a true CPU rate, and output the log held before (a
// previous run of the worker appends to the same file) is not taken for a
// sign of life.
func newObserver(ctx context.Context, a *HostActivities, in WatchInput) *observer {
	o := &observer{a: a, in: in}
	if _, err := o.sampleTree(); err != nil {
		activity.GetLogger(ctx).Warn("Sampling the process tree failed", "error", err)
	}
	o.logGrew()
	return o
}

// sampleTree measures the tree: CPU used since the previous sample (100 =
// one core busy), resident memory and the number of processes now.
func (o *observer) sampleTree() (ResourceSample, error) {
	p := o.in.Process
	groupOurs, err := o.a.ownsGroup(o.in.WorkerID, p)
	if err != nil {
		return ResourceSample{}, err
	}
	// A scan newer than the previous sample's, up to a second old: one
	// serves the samples of every worker of the host that fall due then.
	notBefore := time.Now().Add(-procIndexEvery)
	if o.prevAt.After(notBefore) {
		notBefore = o.prevAt.Add(time.Nanosecond)
	}
	members, now, err := membersSince(p, groupOurs, notBefore)
	if err != nil {
		return ResourceSample{}, err
	}
	ticks := make(map[procKey]uint64, len(members))
	var s ResourceSample
	var used uint64
	for _, m := range members {
		k := procKey{m.PID, m.StartTicks}
		ticks[k] = m.CPUTicks
		switch prev, seen := o.prevTicks[k]; {
		case seen && m.CPUTicks >= prev:
			used += m.CPUTicks - prev
		case !seen && o.prevTicks != nil:
			// New since the last sample: all its time is in this interval.
			used += m.CPUTicks
		}
		s.RSSBytes += residentBytes(m.PID)
	}
	s.Processes = len(members)
	if o.prevTicks != nil {
		if wall := now.Sub(o.prevAt).Seconds(); wall > 0 {
			s.CPUPercent = float64(used) / clockTicks / wall * 100
		}
	}
	o.prevTicks, o.prevAt = ticks, now
	return s, nil
}

// logGrew reports whether the worker's log grew since the last call.
func (o *observer) logGrew() bool {
	st, err := os.Stat(o.in.Process.LogPath)
	if err != nil {
		return false
	}
	size := st.Size()
	// A log truncated in place (copytruncate rotation) that holds anything
	// again was written to since.
	grew := size > o.logSize || (size < o.logSize && size > 0)
	o.logSize = size
	return grew
}

// observe samples the tree and reports what the lifecycle needs. Reporting
// errors are logged: the watch exists to notice the process ending, which a
// failed signal must never stop.
func (o *observer) observe(ctx context.Context) {
	logger := activity.GetLogger(ctx)
	s, err := o.sampleTree()
	if err != nil {
		logger.Warn("Sampling the process tree failed", "error", err)
		return
	}
	o.a.Procs.noteSample(o.in.WorkerID, s)
	if o.in.OutputHeartbeat && o.logGrew() {
		err := o.a.Reporter.OutputHeartbeat(ctx, o.in.WorkerID, s)
		if err == nil {
			// The heartbeat carries the sample: the lifecycle has it.
			o.reported, o.reportAt = &s, time.Now()
			return
		}
		logger.Warn("Output heartbeat failed", "worker_id", o.in.WorkerID, "error", err)
	}
	if !o.reportDue(s) {
		return
	}
	if err := o.a.Reporter.Sample(ctx, o.in.WorkerID, s); err != nil {
		// Not marked reported, so the next interval tries again.
		logger.Warn("Reporting a sample failed", "worker_id", o.in.WorkerID, "error", err)
		return
	}
	o.reported, o.reportAt = &s, time.Now()
}

// reportDue: the lifecycle has no sample yet, its sample is old, or s would
// move the health score.
func (o *observer) reportDue(s ResourceSample) bool {
	return o.reported == nil || time.Since(o.reportAt) >= reportEvery ||
		health.CPUBand(s.CPUPercent) != health.CPUBand(o.reported.CPUPercent) ||
		health.MemoryBand(s.RSSBytes) != health.MemoryBand(o.reported.RSSBytes)
}
