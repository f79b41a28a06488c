package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// bulkResult is one worker's outcome in a bulk command.
type bulkResult struct {
	WorkerID string           `json:"worker_id"`
	Status   workflows.Status `json:"status,omitempty"`
	Refunded int64            `json:"refunded"`
	Error    string           `json:"error,omitempty"`
}

// forMany runs op on the workers concurrently, shows progress on a terminal
// and prints one line per worker and a count of those it `did`. It fails if
// op failed for any worker.
func (a *app) forMany(cmd *cobra.Command, ids []string, concurrency int, did string, op func(context.Context, string) (workflows.WorkerSpec, error)) error {
	results := make([]bulkResult, len(ids))
	progress := newProgress(cmd.ErrOrStderr(), len(ids), isTerminal(os.Stderr))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			spec, err := op(cmd.Context(), id)
			r := bulkResult{WorkerID: id, Status: spec.Status}
			if spec.Cleanup != nil {
				r.Refunded = spec.Cleanup.Refunded
			}
			if err != nil {
				r.Error = err.Error()
			}
			results[i] = r
			progress.step()
		}()
	}
	wg.Wait()
	progress.done()

	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
	}
	if err := a.print(results, func(w io.Writer) {
		for _, r := range results {
			if r.Error != "" {
				fmt.Fprintf(w, "%-40s FAILED  %s\n", r.WorkerID, r.Error)
			} else {
				fmt.Fprintf(w, "%-40s %s (refunded %d tokens)\n", r.WorkerID, r.Status, r.Refunded)
			}
		}
		fmt.Fprintf(w, "%d %s, %d failed\n", len(results)-failed, did, failed)
	}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d workers failed", failed, len(results))
	}
	return nil
}

// confirm asks on the terminal; without one it refuses, so a script never
// kills a fleet by accident or hangs on a prompt.
func (a *app) confirm(question string) error {
	if !isTerminal(os.Stdin) {
		return usageError{fmt.Errorf("%s needs --yes when not run on a terminal", question)}
	}
	fmt.Fprintf(os.Stderr, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("not confirmed; nothing was done")
	}
	return nil
}

// isTerminal asks the kernel for the terminal's settings: only a terminal
// has them (/dev/null is a character device too, but no terminal).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// progress draws a bar on a terminal and nothing elsewhere.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	total   int
	n       int
	enabled bool
}

func newProgress(w io.Writer, total int, enabled bool) *progress {
	p := &progress{w: w, total: total, enabled: enabled}
	p.draw()
	return p
}

func (p *progress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.draw()
}

func (p *progress) draw() {
	if !p.enabled {
		return
	}
	const width = 30
	filled := width * p.n / max(p.total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
}

func (p *progress) done() {
	if p.enabled {
		fmt.Fprintln(p.w)
	}
}
