// Command demo-agent stands in for a coding agent in the demo: it works for
// a while, heartbeating its token use the way a real worker process should,
// then reports idle, and exits cleanly on SIGTERM.
//
// It reads what every worker process gets from the lifecycle: WORKER_ID,
// TASK_ID, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
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

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Printf("%s working on %s, heartbeat every %s", workerID, os.Getenv("TASK_ID"), interval)

	started := time.Now()
	var tokens int64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		status, msg := workflows.HeartbeatBusy, "working"
		if time.Since(started) >= workFor {
			status, msg = workflows.HeartbeatIdle, "task done, waiting for the next"
		} else {
			tokens += 150
		}
		health := 100
		hb := workflows.Heartbeat{TokensUsed: tokens, HealthScore: &health, Status: status, Message: msg}
		if err := c.SignalWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.SignalHeartbeat, hb); err != nil && ctx.Err() == nil {
			log.Printf("heartbeat failed: %v", err)
		}
		select {
		case <-ctx.Done():
			fmt.Println("received SIGTERM, exiting cleanly")
			return
		case <-tick.C:
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
