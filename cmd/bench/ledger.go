package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/commit-relay/worker-lifecycle/fleet"
)

// Ledger compares reservations through the budget ledger with the old
// system's read-modify-write of token-budget.json, at one number of
// concurrent masters.
type Ledger struct {
	Masters      int `json:"masters"`
	Reservations int `json:"reservations"`
	// Ours: reserve updates of one token each through the ledger workflow.
	OursPerSecond        float64 `json:"ours_per_second"`
	OursRatioToSignalCap float64 `json:"ours_ratio_to_signal_ceiling"`
	OursFailed           int     `json:"ours_failed"`
	OursLost             int     `json:"ours_lost"`
	// Old: bench/old-ledger.sh, the runbook's jq and mv, one shell loop
	// per master.
	OldPerSecond float64 `json:"old_per_second"`
	OldLost      int     `json:"old_lost"`
	// OldDrift is total - used - available in the final file: the two
	// fields are read separately, so they drift apart too.
	OldDrift   int64 `json:"old_drift"`
	OldCorrupt bool  `json:"old_file_corrupt"`
}

// measureLedger reserves n single tokens from `masters` goroutines, checks
// the ledger holds exactly what was granted, and releases them again.
func measureLedger(ctx context.Context, f *fleet.Client, masters, n int, signalCeiling float64) (Ledger, error) {
	res := Ledger{Masters: masters, Reservations: n}
	lc := f.Budget()
	before, err := lc.Show(ctx)
	if err != nil {
		return res, err
	}
	ids := make([]string, n)
	var granted, failed atomic.Int64
	start := time.Now()
	_ = forEach(ctx, n, masters, func(ctx context.Context, i int) error {
		id := "worker-ledger-" + runTag + "x" + strconv.FormatInt(idSeq.Add(1), 36)
		if err := lc.Reserve(ctx, id, "bench-ledger/"+id, 1); err != nil {
			failed.Add(1)
			return err
		}
		ids[i] = id
		granted.Add(1)
		return nil
	})
	elapsed := time.Since(start)
	after, err := lc.Show(ctx)
	if err != nil {
		return res, err
	}
	res.OursFailed = int(failed.Load())
	res.OursPerSecond = perSecond(int(granted.Load()), elapsed)
	res.OursRatioToSignalCap = ratio(res.OursPerSecond, signalCeiling)
	res.OursLost = int(granted.Load()) - int(after.Used-before.Used)

	held := compact(ids)
	err = forEach(ctx, len(held), masters, func(ctx context.Context, i int) error {
		_, err := lc.Release(ctx, held[i], "bench-ledger/"+held[i])
		return err
	})
	if err != nil {
		return res, fmt.Errorf("releasing the bench's reservations: %w", err)
	}
	if final, err := lc.Show(ctx); err != nil || final.Used != before.Used {
		return res, fmt.Errorf("the ledger holds %d after the releases, %d before (%v)", final.Used, before.Used, err)
	}
	return res, nil
}

// oldBudget is the old token-budget.json.
type oldBudget struct {
	TotalBudget int64 `json:"total_budget"`
	Available   int64 `json:"available"`
	Used        int64 `json:"used"`
}

// measureOldLedger runs the runbook's procedure from `masters` shell loops,
// n updates of one token in all, and counts the updates the file lost.
func measureOldLedger(ctx context.Context, root, dir string, masters, n int, res *Ledger) error {
	if _, err := exec.LookPath("jq"); err != nil {
		return errors.New("jq is needed to run the old system's procedure (bench/old-ledger.sh): `make tools` installs it")
	}
	file := filepath.Join(dir, fmt.Sprintf("token-budget-%d.json", masters))
	initial, _ := json.Marshal(oldBudget{TotalBudget: 500000, Available: 500000})
	if err := os.WriteFile(file, initial, 0o644); err != nil {
		return err
	}
	script := filepath.Join(root, "bench", "old-ledger.sh")
	cmds := make([]*exec.Cmd, masters)
	start := time.Now()
	for m := range cmds {
		iterations := n / masters
		if m < n%masters {
			iterations++
		}
		cmds[m] = exec.CommandContext(ctx, "bash", script, file, strconv.Itoa(iterations), "1")
		if err := cmds[m].Start(); err != nil {
			return err
		}
	}
	var runErr error
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil && runErr == nil {
			runErr = fmt.Errorf("bench/old-ledger.sh: %w", err)
		}
	}
	elapsed := time.Since(start)
	if runErr != nil {
		return runErr
	}
	res.OldPerSecond = perSecond(n, elapsed)
	var final oldBudget
	data, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(data, &final)
	}
	if err != nil {
		// A half-written file loses everything it held.
		res.OldCorrupt, res.OldLost = true, n
		return nil
	}
	res.OldLost = n - int(final.Used)
	res.OldDrift = final.TotalBudget - final.Used - final.Available
	return nil
}
