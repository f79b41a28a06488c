package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// stopReportWait bounds the wait for the watch's report of a process the
// stop has ended: it polls every few seconds.
const stopReportWait = 10 * time.Second

// stopAndCollect stops the process group and returns the exit status the
// watch saw, if it saw one in time.
func (w *lifecycle) stopAndCollect(ctx workflow.Context, grace time.Duration, watch workflow.Future, cancelWatch workflow.CancelFunc) *activities.ExitStatus {
	w.stopGroup(ctx, grace)
	if watch.IsReady() {
		var exit activities.ExitStatus
		if watch.Get(ctx, &exit) == nil {
			w.applyLastWord(ctx, exit)
			return &exit
		}
		return nil
	}
	// The group is gone; the watch reports within its poll period.
	var exit *activities.ExitStatus
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(watch, func(f workflow.Future) {
		var e activities.ExitStatus
		if f.Get(ctx, &e) == nil {
			w.applyLastWord(ctx, e)
			exit = &e
		}
	})
	sel.AddFuture(workflow.NewTimer(ctx, stopReportWait), func(workflow.Future) {})
	sel.Select(ctx)
	cancelWatch()
	return exit
}

// stopGroup runs StopProcess; a kill that arrives during a graceful stop
// escalates it.
func (w *lifecycle) stopGroup(ctx workflow.Context, grace time.Duration) {
	in := activities.StopInput{WorkerID: w.st.Spec.WorkerID, Process: *w.st.Process, Grace: grace}
	pending := []workflow.Future{workflow.ExecuteActivity(w.stopOptions(ctx, grace), hostActs.StopProcess, in)}
	escalated := grace == 0
	stopped := false
	for len(pending) > 0 {
		sel := workflow.NewSelector(ctx)
		for i, f := range pending {
			sel.AddFuture(f, func(f workflow.Future) {
				var res activities.StopResult
				if err := f.Get(ctx, &res); err != nil {
					workflow.GetLogger(ctx).Warn("Stopping the process failed", "error", err)
				} else {
					stopped = true
					w.recordStop(res)
				}
				pending = append(pending[:i:i], pending[i+1:]...)
			})
		}
		sel.AddReceive(w.wake, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			for req, ok := w.nextStop(); ok; req, ok = w.nextStop() {
				if req.grace == 0 && !escalated {
					escalated = true
					in.Grace = 0
					pending = append(pending, workflow.ExecuteActivity(w.stopOptions(ctx, 0), hostActs.StopProcess, in))
				}
			}
		})
		sel.Select(ctx)
	}
	if stopped {
		w.saga.drop(stepStopProcess)
	}
}

// nextStop takes every queued stop request at once and merges them: a kill
// wins and the shortest grace counts. Taking them one by one would leave a
// kill queued behind a shutdown unseen, since one wake-up may stand for
// several requests.
func (w *lifecycle) nextStop() (stopRequest, bool) {
	if len(w.stops) == 0 {
		return stopRequest{}, false
	}
	req := w.stops[0]
	for _, r := range w.stops[1:] {
		if r.kill && !req.kill {
			req.kill, req.reason = true, r.reason
		}
		req.grace = min(req.grace, r.grace)
	}
	w.stops = nil
	if req.kill {
		req.grace = 0
	}
	return req, true
}
