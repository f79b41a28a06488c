package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// MaxBudgetTotal bounds the ledger's total.
const MaxBudgetTotal int64 = 1_000_000_000_000

const (
	// ledgerUpdatesPerRun bounds one run's history; each accepted update
	// costs a few events.
	ledgerUpdatesPerRun = 500
	// releasedLeasesKept is how many released leases the ledger remembers to
	// refuse a late retry of their reservation.
	releasedLeasesKept = 2000
)

// LedgerState is the budget ledger's whole state, and its continue-as-new
// input. Used and available are derived from the allocations, so they can
// never drift from them.
type LedgerState struct {
	Total       int64                 `json:"total"`
	Allocations map[string]Allocation `json:"allocations"`
	// Released lists recently released leases, oldest first.
	Released       []string `json:"released"`
	UpdatesThisRun int      `json:"updates_this_run"`
}

// Allocation is what one live worker holds.
type Allocation struct {
	Lease      string    `json:"lease"`
	Amount     int64     `json:"amount"`
	ReservedAt time.Time `json:"reserved_at"`
}

// NewLedgerState is the input of a new ledger.
func NewLedgerState(total int64) LedgerState {
	return LedgerState{Total: total, Allocations: map[string]Allocation{}}
}

// ReserveRequest asks the ledger for budget.
type ReserveRequest struct {
	WorkerID string `json:"worker_id"`
	Lease    string `json:"lease"`
	Amount   int64  `json:"amount"`
}

// ReleaseRequest gives a lease's budget back.
type ReleaseRequest struct {
	WorkerID string `json:"worker_id"`
	Lease    string `json:"lease"`
}

// SetTotalRequest changes the ledger's total.
type SetTotalRequest struct {
	Total int64 `json:"total"`
}

// BudgetView is the ledger as operators see it, in the shape of the old
// token-budget.json.
type BudgetView struct {
	Total       int64              `json:"total"`
	Available   int64              `json:"available"`
	Used        int64              `json:"used"`
	Allocations []WorkerAllocation `json:"allocations"`
}

// WorkerAllocation is one live worker's share.
type WorkerAllocation struct {
	WorkerID string `json:"worker_id"`
	Amount   int64  `json:"amount"`
	// Lease names the lifecycle holding it: its workflow ID and first run ID.
	Lease      string    `json:"lease"`
	ReservedAt time.Time `json:"reserved_at"`
}

// ErrTypeLedgerRefused marks a refused ledger update that is not about the
// amount (a bad request, a conflicting lease).
const ErrTypeLedgerRefused = "LedgerRefused"

// ErrTypeUnknownLease marks a release of a lease the ledger has never held
// and that is not the worker's own lifecycle's: nothing is given back and
// nothing is written.
const ErrTypeUnknownLease = "UnknownLease"

// BudgetLedger is the one durable token budget. Reserve and release are
// updates, validated before they are written, and idempotent per lease.
// Release is also a signal (SignalRelease), which lifecycles send: a signal
// has no answer to wait for and no limit on how many are in flight, so a
// wave of hundreds of ends cannot queue behind the server's ten updates in
// flight per workflow and time out holding their tokens.
func BudgetLedger(ctx workflow.Context, st LedgerState) error {
	if st.Allocations == nil {
		st.Allocations = map[string]Allocation{}
	}
	l := &ledger{st: st}
	if err := l.register(ctx); err != nil {
		return err
	}
	releases := workflow.GetSignalChannel(ctx, SignalRelease)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var req ReleaseRequest
			if !releases.Receive(ctx, &req) {
				return
			}
			l.releaseSignalled(ctx, req)
		}
	})
	err := workflow.Await(ctx, func() bool {
		return l.st.UpdatesThisRun >= ledgerUpdatesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
	})
	if err != nil {
		if !temporal.IsCanceledError(err) || workflow.GetVersion(ctx, VersionLedgerSurvivesCancel, workflow.DefaultVersion, 1) != 1 {
			return err
		}
		// A cancel (a click in the Web UI) must not end the one ledger:
		// the next reservation would start an empty one and every live
		// allocation would be forgotten. It carries on in a new run.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
		workflow.GetLogger(ctx).Warn("Budget ledger cancelled; it continues as new with its allocations")
	}
	// Accepted updates must finish in this run; new ones wait for the next.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	// Releases received but not applied yet are applied now: a signal is
	// not handed to the next run.
	for {
		var req ReleaseRequest
		if !releases.ReceiveAsync(&req) {
			break
		}
		l.releaseSignalled(ctx, req)
	}
	l.st.UpdatesThisRun = 0
	return workflow.NewContinueAsNewError(ctx, BudgetLedger, l.st)
}

type ledger struct {
	st LedgerState
}

func (l *ledger) used() int64 {
	var used int64
	for _, a := range l.st.Allocations {
		used += a.Amount
	}
	return used
}

func (l *ledger) view() BudgetView {
	v := BudgetView{Total: l.st.Total, Allocations: make([]WorkerAllocation, 0, len(l.st.Allocations))}
	for id, a := range l.st.Allocations {
		v.Allocations = append(v.Allocations, WorkerAllocation{WorkerID: id, Amount: a.Amount, Lease: a.Lease, ReservedAt: a.ReservedAt})
		v.Used += a.Amount
	}
	sort.Slice(v.Allocations, func(i, j int) bool { return v.Allocations[i].WorkerID < v.Allocations[j].WorkerID })
	v.Available = v.Total - v.Used
	return v
}

func (l *ledger) register(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryBudget, func() (BudgetView, error) {
		return l.view(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReserve, l.reserve,
		workflow.UpdateHandlerOptions{Validator: l.validateReserve}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRelease, l.release,
		workflow.UpdateHandlerOptions{Validator: l.validateRelease}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateSetTotal, l.setTotal,
		workflow.UpdateHandlerOptions{Validator: l.validateSetTotal})
}

// validateReserve refuses before anything is written to history. An update
// rejected here leaves no trace but the error its caller gets.
func (l *ledger) validateReserve(req ReserveRequest) error {
	if !WorkerIDPattern.MatchString(req.WorkerID) || req.Lease == "" {
		return refused(fmt.Sprintf("invalid reservation: worker id %q, lease %q", req.WorkerID, req.Lease))
	}
	if req.Amount < MinBudget || req.Amount > MaxBudget {
		return refused(fmt.Sprintf("budget %d is not in %d..%d", req.Amount, MinBudget, MaxBudget))
	}
	if held, ok := l.st.Allocations[req.WorkerID]; ok {
		if held.Lease == req.Lease {
			return nil // a retry: the handler returns what is held
		}
		return refused(fmt.Sprintf("worker %s already holds %d tokens for another lifecycle", req.WorkerID, held.Amount))
	}
	for _, released := range l.st.Released {
		if released == req.Lease {
			return refused(fmt.Sprintf("the reservation of worker %s was released already", req.WorkerID))
		}
	}
	if available := l.st.Total - l.used(); req.Amount > available {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: available %d < required %d", activities.ErrBudgetRefused, available, req.Amount),
			activities.ErrTypeBudgetRefused, nil)
	}
	return nil
}

func (l *ledger) reserve(ctx workflow.Context, req ReserveRequest) (BudgetView, error) {
	if err := l.validateReserve(req); err != nil {
		return l.view(), err
	}
	if _, ok := l.st.Allocations[req.WorkerID]; !ok {
		l.st.Allocations[req.WorkerID] = Allocation{Lease: req.Lease, Amount: req.Amount, ReservedAt: workflow.Now(ctx).UTC()}
		l.st.UpdatesThisRun++
	}
	return l.view(), nil
}

func (l *ledger) validateRelease(req ReleaseRequest) error {
	if req.WorkerID == "" || req.Lease == "" {
		return refused("invalid release: worker id and lease are required")
	}
	if !l.knows(req) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("unknown lease %q: worker %s holds nothing under it", req.Lease, req.WorkerID), ErrTypeUnknownLease, nil)
	}
	return nil
}

// knows reports whether the release may be written: the lease holds the
// worker's allocation, was released already, or is a lease of the worker's
// own lifecycle (<workflow ID>/<run ID>). That last is a lifecycle whose
// reservation failed half-way releasing to be sure: its release is kept,
// so that the reservation, if it is still on its way, is refused when it
// lands instead of holding tokens nobody will give back. A release of any
// other lease (a typo, another worker's) is refused unwritten.
func (l *ledger) knows(req ReleaseRequest) bool {
	if held, ok := l.st.Allocations[req.WorkerID]; ok && held.Lease == req.Lease {
		return true
	}
	if strings.HasPrefix(req.Lease, WorkflowID(req.WorkerID)+"/") {
		return true
	}
	for _, released := range l.st.Released {
		if released == req.Lease {
			return true
		}
	}
	return false
}

// releaseSignalled applies a release sent as a signal. Signals cannot be
// refused, so a bad or unknown one is logged and changes nothing.
func (l *ledger) releaseSignalled(ctx workflow.Context, req ReleaseRequest) {
	if err := l.validateRelease(req); err != nil {
		workflow.GetLogger(ctx).Warn("Release signal ignored", "worker_id", req.WorkerID, "lease", req.Lease, "reason", err)
		return
	}
	if _, err := l.release(ctx, req); err != nil {
		workflow.GetLogger(ctx).Warn("Release signal failed", "worker_id", req.WorkerID, "lease", req.Lease, "error", err)
	}
}

// release returns what the lease holds; a lease that holds nothing (released
// already, or never reserved) gets 0 and changes nothing.
func (l *ledger) release(ctx workflow.Context, req ReleaseRequest) (int64, error) {
	held, ok := l.st.Allocations[req.WorkerID]
	if !ok || held.Lease != req.Lease {
		l.remember(req.Lease)
		return 0, nil
	}
	delete(l.st.Allocations, req.WorkerID)
	l.remember(req.Lease)
	l.st.UpdatesThisRun++
	return held.Amount, nil
}

func (l *ledger) remember(lease string) {
	for _, r := range l.st.Released {
		if r == lease {
			return
		}
	}
	l.st.Released = append(l.st.Released, lease)
	if n := len(l.st.Released); n > releasedLeasesKept {
		l.st.Released = append([]string(nil), l.st.Released[n-releasedLeasesKept:]...)
	}
}

func (l *ledger) validateSetTotal(req SetTotalRequest) error {
	if req.Total < 0 || req.Total > MaxBudgetTotal {
		return refused(fmt.Sprintf("total %d is not in 0..%d", req.Total, MaxBudgetTotal))
	}
	if used := l.used(); req.Total < used {
		return refused(fmt.Sprintf("total %d is below the %d tokens allocated to live workers", req.Total, used))
	}
	return nil
}

func (l *ledger) setTotal(ctx workflow.Context, req SetTotalRequest) (BudgetView, error) {
	if err := l.validateSetTotal(req); err != nil {
		return l.view(), err
	}
	l.st.Total = req.Total
	l.st.UpdatesThisRun++
	return l.view(), nil
}

func refused(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeLedgerRefused, nil)
}

// IsBudgetRefused reports whether err is the ledger's refusal of a
// reservation that does not fit.
func IsBudgetRefused(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeBudgetRefused
}
