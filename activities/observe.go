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

// observer measures one worker's process tree for the watcher.
type observer struct {
	a  *Activities
	in WatchInput

	prevTicks map[procKey]uint64
	prevAt    time.Time
	reported  *ResourceSample
	reportAt  time.Time
	logSize   int64
}

type procKey struct {
	pid   int
	start uint64
}

// sample measures the tree: CPU since the previous sample (100 = one core)
// and resident memory now.
func (o *observer) sample() (ResourceSample, error) {
	p := o.in.Process
	members, err := treeMembers(p, o.groupOurs())
	if err != nil {
		return ResourceSample{}, err
	}
	now := time.Now()
	ticks := make(map[procKey]uint64, len(members))
	var s ResourceSample
	var used uint64
	for _, m := range members {
		k := procKey{m.PID, m.StartTicks}
		ticks[k] = m.CPUTicks
		// A process new since the last sample counts from its start.
		if prev, ok := o.prevTicks[k]; ok && m.CPUTicks >= prev {
			used += m.CPUTicks - prev
		} else if !ok && o.prevTicks != nil {
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

// groupOurs: the leader still runs as the very process we started.
func (o *observer) groupOurs() bool {
	running, err := sameProcessRunning(o.in.Process.PID, o.in.Process.StartTicks)
	return err == nil && running
}

// observe samples the tree and reports what the lifecycle needs. Reporting
// errors are logged: they must never end the watch.
func (o *observer) observe(ctx context.Context) {
	logger := activity.GetLogger(ctx)
	s, err := o.sample()
	if err != nil {
		logger.Warn("Sampling the process tree failed", "error", err)
		return
	}
	if o.in.OutputHeartbeat {
		if st, err := os.Stat(o.in.Process.LogPath); err == nil {
			grew := st.Size() > o.logSize
			o.logSize = st.Size()
			if grew {
				if err := o.a.Reporter.OutputHeartbeat(ctx, o.in.WorkerID, s); err != nil {
					logger.Warn("Output heartbeat failed", "error", err)
				}
				o.reported, o.reportAt = &s, time.Now()
				return
			}
		}
	}
	if o.reported == nil || time.Since(o.reportAt) >= reportEvery ||
		health.CPUBand(s.CPUPercent) != health.CPUBand(o.reported.CPUPercent) ||
		health.MemoryBand(s.RSSBytes) != health.MemoryBand(o.reported.RSSBytes) {
		if err := o.a.Reporter.Sample(ctx, o.in.WorkerID, s); err != nil {
			logger.Warn("Reporting a sample failed", "error", err)
			return
		}
		o.reported, o.reportAt = &s, time.Now()
	}
}
