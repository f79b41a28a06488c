package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// The ceiling is what the same server does with workflows that do nothing:
// no lifecycle can be cheaper than a workflow with no activity, nor a
// heartbeat cheaper than a bare signal into an open workflow.
const (
	ceilingQueue = "bench-ceiling"
	sinkSignal   = "ping"
	sinkStop     = "stop"
)

// Ceiling is the floor Temporal itself sets, measured in this run.
type Ceiling struct {
	Concurrency      int     `json:"concurrency"`
	Seconds          float64 `json:"seconds"`
	NoopWorkflows    int     `json:"noop_workflows"`
	NoopPerSecond    float64 `json:"noop_workflows_per_second"`
	Signals          int     `json:"signals"`
	SignalsPerSecond float64 `json:"signals_per_second"`
	// SignalsReceived must equal Signals: the sinks count what they got.
	SignalsReceived int `json:"signals_received"`
}

// noopWorkflow is the cheapest workflow there is: one workflow task.
func noopWorkflow(workflow.Context) error { return nil }

// signalSink counts signals until told to stop, then drains what is
// buffered, so that every signal sent before the stop is counted.
func signalSink(ctx workflow.Context) (int, error) {
	pings := workflow.GetSignalChannel(ctx, sinkSignal)
	stop := workflow.GetSignalChannel(ctx, sinkStop)
	n, done := 0, false
	for !done {
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(pings, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); n++ })
		sel.AddReceive(stop, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); done = true })
		sel.Select(ctx)
	}
	for pings.ReceiveAsync(nil) {
		n++
	}
	return n, nil
}

// measureCeiling runs no-op workflows, then signals into open sinks, each
// for d with `concurrency` callers, on a worker inside this process.
func measureCeiling(ctx context.Context, c client.Client, concurrency int, d time.Duration) (Ceiling, error) {
	res := Ceiling{Concurrency: concurrency}
	w := sdkworker.New(c, ceilingQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(noopWorkflow, workflow.RegisterOptions{Name: "BenchNoop"})
	w.RegisterWorkflowWithOptions(signalSink, workflow.RegisterOptions{Name: "BenchSignalSink"})
	if err := w.Start(); err != nil {
		return res, err
	}
	defer w.Stop()
	run := time.Now().UnixNano()
	opts := func(id string) client.StartWorkflowOptions {
		return client.StartWorkflowOptions{ID: id, TaskQueue: ceilingQueue}
	}

	var noops atomic.Int64
	start := time.Now()
	err := forEach(ctx, concurrency, concurrency, func(ctx context.Context, g int) error {
		for i := 0; time.Since(start) < d; i++ {
			wr, err := c.ExecuteWorkflow(ctx, opts(fmt.Sprintf("bench-noop-%d-%d-%d", run, g, i)), "BenchNoop")
			if err == nil {
				err = wr.Get(ctx, nil)
			}
			if err != nil {
				return fmt.Errorf("no-op workflow: %w", err)
			}
			noops.Add(1)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return res, err
	}
	res.NoopWorkflows = int(noops.Load())
	res.NoopPerSecond = perSecond(res.NoopWorkflows, elapsed)

	// One sink per caller, as each heartbeat sender talks to its own lifecycle.
	sinks := make([]client.WorkflowRun, concurrency)
	for i := range sinks {
		var err error
		if sinks[i], err = c.ExecuteWorkflow(ctx, opts(fmt.Sprintf("bench-sink-%d-%d", run, i)), "BenchSignalSink"); err != nil {
			return res, err
		}
	}
	var signals atomic.Int64
	hb := workflows.Heartbeat{TokensUsed: 10, Status: workflows.HeartbeatBusy}
	start = time.Now()
	err = forEach(ctx, concurrency, concurrency, func(ctx context.Context, g int) error {
		for time.Since(start) < d {
			if err := c.SignalWorkflow(ctx, sinks[g].GetID(), "", sinkSignal, hb); err != nil {
				return fmt.Errorf("signal: %w", err)
			}
			signals.Add(1)
		}
		return nil
	})
	elapsed = time.Since(start)
	res.Seconds = d.Seconds()
	res.Signals = int(signals.Load())
	res.SignalsPerSecond = perSecond(res.Signals, elapsed)
	for _, s := range sinks {
		if serr := c.SignalWorkflow(ctx, s.GetID(), "", sinkStop, nil); serr != nil && err == nil {
			err = serr
		}
	}
	for _, s := range sinks {
		var n int
		if gerr := s.Get(ctx, &n); gerr != nil && err == nil {
			err = gerr
		}
		res.SignalsReceived += n
	}
	return res, err
}
