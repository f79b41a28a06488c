package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// connect is how a master connects: its own Temporal client, and the worker
// types file its worker programs run with.
func connect() (client.Client, *fleet.Client) {
	c, err := client.Dial(client.Options{HostPort: os.Getenv("TEMPORAL_ADDRESS")})
	if err != nil {
		log.Fatal(err)
	}
	fc, err := fleet.New(c, fleet.Options{WorkerTypesFile: "worker-types.json"})
	if err != nil {
		log.Fatal(err)
	}
	return c, fc
}

// A master's whole use of one worker: spawn it, read it, stop it, and find
// its budget back.
func Example() {
	c, fc := connect()
	defer c.Close()
	ctx := context.Background()

	spec, err := fc.Spawn(ctx, workflows.SpawnRequest{
		WorkerType:  "implementation-worker",
		TaskID:      "task-example-1",
		Master:      "example-master",
		Priority:    "high",
		MaxRestarts: -1, // the worker type's own
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("spawned:", spec.Status, "with", spec.TokenBudget.Allocated, "tokens")

	spec, err = fc.Status(ctx, spec.WorkerID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("its process runs:", spec.PID > 0)

	if _, err := fc.Shutdown(ctx, spec.WorkerID, workflows.ShutdownRequest{Reason: "task merged"}); err != nil {
		log.Fatal(err)
	}
	final, err := fc.Wait(ctx, spec.WorkerID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ended:", final.Status)

	budget, err := fc.Budget().Show(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("all tokens back:", budget.Available == budget.Total)

	err = fc.Heartbeat(ctx, spec.WorkerID, workflows.Heartbeat{})
	fmt.Println("a heartbeat now is refused:", errors.Is(err, fleet.ErrEnded))
	// Output:
	// spawned: running with 10000 tokens
	// its process runs: true
	// ended: completed
	// all tokens back: true
	// a heartbeat now is refused: true
}

// An agent's heartbeats. A worker process gets its id in WORKER_ID; here a
// master spawns it first.
func ExampleClient_Heartbeater() {
	c, fc := connect()
	defer c.Close()
	ctx := context.Background()
	spec, err := fc.Spawn(ctx, workflows.SpawnRequest{WorkerType: "implementation-worker",
		TaskID: "task-example-2", Master: "example-master", MaxRestarts: -1})
	if err != nil {
		log.Fatal(err)
	}

	// The agent's side.
	hb, err := fc.Heartbeater(spec.WorkerID, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	hb.OnError = func(err error) { log.Printf("heartbeat failed: %v", err) }
	_ = hb.SetStatus(workflows.HeartbeatBusy, "writing the tests")
	agent, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- hb.Run(agent) }()
	_ = hb.AddTokens(1200) // sent with the next heartbeat
	_ = hb.SetStatus(workflows.HeartbeatIdle, "task done")

	// The master sees what the agent reported.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if spec, err = fc.Status(ctx, spec.WorkerID); err == nil && spec.Status == workflows.StatusIdle {
			break
		}
	}
	fmt.Println(spec.Status, spec.TokenBudget.Used, spec.Heartbeat.Message)

	stop()
	fmt.Println("heartbeats stopped:", <-done)
	if _, err := fc.Kill(ctx, spec.WorkerID, workflows.KillRequest{Reason: "example over"}); err != nil {
		log.Fatal(err)
	}
	// A stop answers once the worker is stopping; Wait returns once its
	// process is gone and its budget back.
	if _, err := fc.Wait(ctx, spec.WorkerID); err != nil {
		log.Fatal(err)
	}
	// Output:
	// idle 1200 task done
	// heartbeats stopped: <nil>
}

// A master's view of its workers.
func ExampleClient_List() {
	c, fc := connect()
	defer c.Close()
	ctx := context.Background()
	for _, task := range []string{"task-list-1", "task-list-2"} {
		if _, err := fc.Spawn(ctx, workflows.SpawnRequest{WorkerType: "implementation-worker",
			TaskID: task, Master: "lister", MaxRestarts: -1}); err != nil {
			log.Fatal(err)
		}
	}
	var specs []workflows.WorkerSpec
	// Lists read Temporal's visibility store, which lags a start by a moment.
	for deadline := time.Now().Add(30 * time.Second); len(specs) < 2 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if specs, err = fc.List(ctx, fleet.Filter{Master: "lister"}); err != nil {
			log.Fatal(err)
		}
	}
	for _, s := range specs {
		fmt.Println(s.TaskID, s.Status)
		if _, err := fc.Kill(ctx, s.WorkerID, workflows.KillRequest{}); err != nil {
			log.Fatal(err)
		}
		if _, err := fc.Wait(ctx, s.WorkerID); err != nil {
			log.Fatal(err)
		}
	}
	// Unordered output:
	// task-list-1 running
	// task-list-2 running
}

// A spawn that the budget cannot cover fails with nothing held, and says
// why.
func ExampleClient_Spawn_budgetRefused() {
	c, fc := connect()
	defer c.Close()
	ctx := context.Background()
	budget := fc.Budget()
	before, err := budget.Show(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := budget.SetTotal(ctx, 5000); err != nil {
		log.Fatal(err)
	}
	defer func() { _, _ = budget.SetTotal(ctx, before.Total) }()

	_, err = fc.Spawn(ctx, workflows.SpawnRequest{WorkerType: "implementation-worker",
		TaskID: "task-example-3", Master: "example-master", MaxRestarts: -1})
	fmt.Println(errors.Is(err, fleet.ErrSpawnFailed), errors.Is(err, fleet.ErrBudgetRefused))
	after, _ := budget.Show(ctx)
	fmt.Println("held:", after.Total-after.Available)
	// Output:
	// true true
	// held: 0
}

// A request with bad fields is refused before any call, each field named
// as in the wire contract (docs/API.md).
func ExampleInvalidError() {
	fc, err := fleet.New(nil, fleet.Options{}) // offline: checks only
	if err != nil {
		log.Fatal(err)
	}
	_, err = fc.Resolve(workflows.SpawnRequest{WorkerType: "implementation-worker",
		Master: "example-master", TaskID: "task 4", Priority: "urgent", Budget: -1})
	var invalid *fleet.InvalidError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
	}
	// Output:
	// task_id: task id "task 4" must match ^task-[0-9A-Za-z._-]+$ (at most 128 characters)
	// priority: priority "urgent" must be one of low, medium, high, critical
	// budget: budget -1 is not in 1..200000
}
