package devserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// WorkerProgram is a worker program (./worker, built by the caller) to run
// against a server, as one host.
type WorkerProgram struct {
	Binary    string
	Address   string
	TypesFile string
	LogDir    string
	StateDir  string
	Host      string
	// Env is added to this process's environment.
	Env []string
	// LogFile receives its output, appended to.
	LogFile string
	// ReadyWithin bounds the wait for its first poll; zero means 60 s (a
	// cluster's queue partitions take a few seconds to reach).
	ReadyWithin time.Duration
}

// StartWorker starts the worker program and returns once this very process
// polls its host's queue, so that a spawn that follows finds it.
func StartWorker(ctx context.Context, c client.Client, p WorkerProgram) (*exec.Cmd, error) {
	cmd, err := p.Start()
	if err != nil {
		return nil, err
	}
	within := p.ReadyWithin
	if within == 0 {
		within = 60 * time.Second
	}
	identity := strconv.Itoa(cmd.Process.Pid) + "@"
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := c.DescribeTaskQueue(ctx, workflows.HostTaskQueue(p.Host), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err == nil {
			for _, poller := range resp.Pollers {
				if strings.HasPrefix(poller.Identity, identity) {
					return cmd, nil
				}
			}
		}
		if syscall.Kill(cmd.Process.Pid, 0) != nil {
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("the worker program for %s did not start polling (log %s)", p.Host, p.LogFile)
}

// Start starts the worker program without waiting for it to poll (a
// program that cannot reach its server at first, say).
func (p WorkerProgram) Start() (*exec.Cmd, error) {
	logFile, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(p.Binary, "--address", p.Address, "--worker-types", p.TypesFile,
		"--log-dir", p.LogDir, "--state-dir", p.StateDir, "--host", p.Host)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A test binary that dies (a panic, a timeout) takes its worker programs
	// along, or they would go on taking tasks from the next run's server.
	// Linux sends it when the starting thread ends; Go ends a thread only
	// after a goroutine that locked it returns locked, which tests do not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the worker program for %s: %w", p.Host, err)
	}
	return cmd, nil
}

// StopWorker ends a worker program with sig (SIGKILL: a crash) and waits
// for it to exit, killing it if it has not within the wait.
func StopWorker(cmd *exec.Cmd, sig syscall.Signal, wait time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
	}
}
