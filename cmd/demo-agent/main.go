// Command demo-agent stands in for a coding agent in the demo: it works for
// a while, heartbeating its token use the way a real worker process should,
// then reports idle, and exits cleanly on SIGTERM.
//
// It reads what every worker process gets from the lifecycle: WORKER_ID,
// TASK_ID, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, and heartbeats with
// fleet.Heartbeater, as an agent written in Go would.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/connection"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func main() {
	workerID := os.Getenv("WORKER_ID")
	if workerID == "" {
		log.Fatal("WORKER_ID is not set: demo-agent is started by a worker lifecycle")
	}
	interval := durationEnv("DEMO_HEARTBEAT_INTERVAL", 5*time.Second)
	workFor := durationEnv("DEMO_WORK_FOR", time.Minute)

	// The same settings as the worker program, TLS and API key included.
	c, err := connection.FromEnv().Dial(true)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	fc, err := fleet.New(c, fleet.Options{})
	if err != nil {
		log.Fatal(err)
	}
	hb, err := fc.Heartbeater(workerID, interval)
	if err != nil {
		log.Fatal(err)
	}
	hb.OnError = func(err error) { log.Printf("heartbeat failed: %v", err) }

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Printf("%s working on %s, heartbeat every %s", workerID, os.Getenv("TASK_ID"), interval)
	_ = hb.SetStatus(workflows.HeartbeatBusy, "working")
	beating := make(chan error, 1)
	go func() { beating <- hb.Run(ctx) }()

	work := time.NewTicker(interval)
	defer work.Stop()
	done := time.After(workFor)
	for {
		select {
		case <-ctx.Done():
			<-beating
			fmt.Println("received SIGTERM, exiting cleanly")
			return
		case err := <-beating:
			if err == nil { // SIGTERM: Run saw the context end first
				fmt.Println("received SIGTERM, exiting cleanly")
				return
			}
			// The lifecycle has ended: nobody accounts for this work now.
			log.Fatalf("stopping: %v", err)
		case <-done:
			_ = hb.SetStatus(workflows.HeartbeatIdle, "task done, waiting for the next")
			work.Stop()
		case <-work.C:
			_ = hb.AddTokens(150)
		}
	}
}

func durationEnv(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		if n, err := strconv.Atoi(v); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return def
}
