package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// answerQueue is where the bench runs its answer sinks.
const answerQueue = "bench-ledger-answers"

// answerSink stands in for a lifecycle waiting for its budget: it runs
// under the lifecycle's workflow ID and ends with the ledger's answer,
// once it is no longer "queued".
func answerSink(ctx workflow.Context) (workflows.BudgetAnswer, error) {
	answers := workflow.GetSignalChannel(ctx, workflows.SignalBudgetAnswer)
	for {
		var a workflows.BudgetAnswer
		answers.Receive(ctx, &a)
		if !a.Queued {
			return a, nil
		}
	}
}

// startAnswerSinks runs the worker of the answer sinks in this process.
func startAnswerSinks(c client.Client) (sdkworker.Worker, error) {
	w := sdkworker.New(c, answerQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(answerSink, workflow.RegisterOptions{Name: "BenchAnswerSink"})
	return w, w.Start()
}

// startSink starts the answer sink of a worker id, under its lifecycle's
// workflow ID, where the ledger sends its answers.
func startSink(ctx context.Context, c client.Client, id string) error {
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(id), TaskQueue: answerQueue}, "BenchAnswerSink")
	return err
}

// LedgerSignals is one of the ledger's paths at one number of masters. By
// signal: each reservation is a reserve signal, answered by the ledger with
// a signal to the asker's workflow (the fallback). By ask: each is the ask
// update, answered in its result, as lifecycles reserve since reserve-ask.
type LedgerSignals struct {
	// Path is "signal" or "ask".
	Path         string `json:"path"`
	Masters      int    `json:"masters"`
	Reservations int    `json:"reservations"`
	// Fallbacks counts asks the ledger could not take as an update, which
	// went as the signal (ask path only).
	Fallbacks int `json:"fallbacks,omitempty"`
	// PerSecond counts reservations from the first signal sent to the last
	// answer received.
	PerSecond            float64 `json:"per_second"`
	RatioToSignalCeiling float64 `json:"ratio_to_signal_ceiling"`
	Refused              int     `json:"refused"`
	// Lost is granted reservations the ledger does not hold, or holds
	// twice.
	Lost int `json:"lost"`
	// AnswerP99ms is the time from a reservation's signal to its answer.
	AnswerP50ms float64 `json:"answer_p50_ms"`
	AnswerP99ms float64 `json:"answer_p99_ms"`
}

// Paths of the ledger's rows.
const (
	pathSignal = "signal"
	pathAsk    = "ask"
)

// measureLedgerSignals sends n reservations of one token from `masters`
// goroutines by the path (reserve signals, or ask updates as lifecycles
// send them), with answer sinks started beforehand for the answers that
// come by signal, waits for every answer, checks the ledger holds exactly
// what it granted, and gives it back with release signals.
func measureLedgerSignals(ctx context.Context, c client.Client, lc *fleet.Budget, path string, masters, n int, signalCeiling float64) (LedgerSignals, error) {
	res := LedgerSignals{Path: path, Masters: masters, Reservations: n}
	w, err := startAnswerSinks(c)
	if err != nil {
		return res, err
	}
	defer w.Stop()
	before, err := lc.Show(ctx)
	if err != nil {
		return res, err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "worker-ledger-" + runTag + "s" + strconv.FormatInt(idSeq.Add(1), 36)
	}
	err = forEach(ctx, n, masters, func(ctx context.Context, i int) error {
		return startSink(ctx, c, ids[i])
	})
	if err != nil {
		return res, fmt.Errorf("starting the answer sinks: %w", err)
	}

	latencies := make([]time.Duration, n)
	inCall := make([]bool, n)
	var granted, refused, fallbacks atomic.Int64
	start := time.Now()
	err = forEach(ctx, n, masters, func(ctx context.Context, i int) error {
		sent := time.Now()
		req := workflows.ReserveRequest{WorkerID: ids[i], Lease: "bench-ledger/" + ids[i], Amount: 1}
		var a workflows.BudgetAnswer
		answered := false
		if path == pathAsk {
			var err error
			if a, answered, err = lc.Request(ctx, req); err != nil {
				return err
			}
			if !answered {
				fallbacks.Add(1)
			}
			inCall[i] = answered && !a.Queued
		} else if err := lc.Ask(ctx, req); err != nil {
			return err
		}
		if !inCall[i] {
			if err := c.GetWorkflow(ctx, workflows.WorkflowID(ids[i]), "").Get(ctx, &a); err != nil {
				return err
			}
		}
		latencies[i] = time.Since(sent)
		if a.Granted {
			granted.Add(1)
		} else {
			refused.Add(1)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return res, err
	}
	after, err := lc.Show(ctx)
	if err != nil {
		return res, err
	}
	res.PerSecond = perSecond(n, elapsed)
	res.RatioToSignalCeiling = ratio(res.PerSecond, signalCeiling)
	res.Refused = int(refused.Load())
	res.Fallbacks = int(fallbacks.Load())
	res.Lost = int(granted.Load()) - int(after.Used-before.Used)
	p := percentiles(latencies)
	res.AnswerP50ms, res.AnswerP99ms = p.P50ms, p.P99ms

	// The sinks of answers that came in the call still wait: they are
	// ended with a last answer, as a signal would have.
	err = forEach(ctx, n, masters, func(ctx context.Context, i int) error {
		if !inCall[i] {
			return nil
		}
		return c.SignalWorkflow(ctx, workflows.WorkflowID(ids[i]), "", workflows.SignalBudgetAnswer, workflows.BudgetAnswer{WorkerID: ids[i], Granted: true})
	})
	if err != nil {
		return res, fmt.Errorf("ending the answer sinks: %w", err)
	}

	err = forEach(ctx, n, masters, func(ctx context.Context, i int) error {
		return c.SignalWorkflow(ctx, workflows.LedgerWorkflowID, "", workflows.SignalRelease,
			workflows.ReleaseRequest{WorkerID: ids[i], Lease: "bench-ledger/" + ids[i]})
	})
	if err != nil {
		return res, fmt.Errorf("releasing the bench's reservations: %w", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		final, err := lc.Show(ctx)
		if err == nil && final.Used == before.Used {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the ledger holds %d a minute after the releases, %d before (%v)", final.Used, before.Used, err)
		}
	}
}

// AdmissionLag is how soon a refund admits the head of the queue.
type AdmissionLag struct {
	Queued int `json:"queued"`
	// Lag runs from a release's call to the answer that grants the next
	// queued request, one refund at a time.
	Lag Percentiles `json:"lag"`
}

// measureAdmissionLag fills a budget of k tokens with k one-token
// reservations, queues k more (answer sinks waiting with Wait), then gives
// the first ones back one by one and times each refund until the next
// queued request is granted.
func measureAdmissionLag(ctx context.Context, c client.Client, lc *fleet.Budget, k int) (res AdmissionLag, err error) {
	res.Queued = k
	w, err := startAnswerSinks(c)
	if err != nil {
		return res, err
	}
	defer w.Stop()
	before, err := lc.Show(ctx)
	if err != nil {
		return res, err
	}
	if _, err := lc.SetTotal(ctx, before.Used+int64(k)); err != nil {
		return res, err
	}
	defer func() {
		if _, terr := lc.SetTotal(context.WithoutCancel(ctx), before.Total); terr != nil && err == nil {
			err = terr
		}
	}()
	id := func() string { return "worker-ledger-" + runTag + "q" + strconv.FormatInt(idSeq.Add(1), 36) }
	blockers, waiters := make([]string, k), make([]string, k)
	for i := range blockers {
		blockers[i] = id()
		if err := lc.Reserve(ctx, blockers[i], "bench-ledger/"+blockers[i], 1); err != nil {
			return res, err
		}
	}
	for i := range waiters {
		waiters[i] = id()
		if err := startSink(ctx, c, waiters[i]); err != nil {
			return res, err
		}
		if err := lc.Ask(ctx, workflows.ReserveRequest{WorkerID: waiters[i], Lease: "bench-ledger/" + waiters[i], Amount: 1, Wait: true}); err != nil {
			return res, err
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		v, err := lc.Show(ctx)
		if err == nil && len(v.Queue) >= k {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("only %d of %d requests queued after a minute (%v)", len(v.Queue), k, err)
		}
	}
	lags := make([]time.Duration, k)
	for i := range blockers {
		start := time.Now()
		if _, err := lc.Release(ctx, blockers[i], "bench-ledger/"+blockers[i]); err != nil {
			return res, err
		}
		var a workflows.BudgetAnswer
		if err := c.GetWorkflow(ctx, workflows.WorkflowID(waiters[i]), "").Get(ctx, &a); err != nil {
			return res, err
		}
		if !a.Granted {
			return res, fmt.Errorf("queued request %d was not granted: %+v", i, a)
		}
		lags[i] = time.Since(start)
	}
	res.Lag = percentiles(lags)
	for _, w := range waiters {
		if _, err := lc.Release(ctx, w, "bench-ledger/"+w); err != nil {
			return res, err
		}
	}
	return res, nil
}
