package workflows

import (
	"cmp"
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
	// Queue holds the reservations waiting for room, in the order they are
	// admitted: by priority (critical first), then by arrival (Seq).
	Queue []QueuedRequest `json:"queue,omitempty"`
	// NextSeq numbers arrivals, across runs.
	NextSeq int64 `json:"next_seq,omitempty"`
	// CarriedReleases and Carried are the signals that arrived while the
	// previous run closed, applied first, in order, by this one.
	CarriedReleases []ReleaseRequest `json:"carried_releases,omitempty"`
	Carried         []ReserveRequest `json:"carried,omitempty"`
	// Pools are the pools configured with `budget pool set`; PoolDefaults
	// are the settings of every other pool (pools.go).
	Pools        map[string]PoolSettings `json:"pools,omitempty"`
	PoolDefaults PoolSettings            `json:"pool_defaults,omitempty"`
	// Root holds the root's spend window and alert threshold; Windows and
	// Alerts the state of the pools' and the root's (windows.go).
	Root    PoolSettings           `json:"root,omitempty"`
	Windows map[string]WindowState `json:"windows,omitempty"`
	Alerts  map[string]AlertState  `json:"alerts,omitempty"`
}

// QueuedRequest is a reservation waiting in the queue.
type QueuedRequest struct {
	WorkerID string    `json:"worker_id"`
	Lease    string    `json:"lease"`
	Amount   int64     `json:"amount"`
	Priority string    `json:"priority"`
	Pool     string    `json:"pool,omitempty"`
	Seq      int64     `json:"seq"`
	Since    time.Time `json:"since"`
}

// Allocation is what one live worker holds.
type Allocation struct {
	Lease      string    `json:"lease"`
	Amount     int64     `json:"amount"`
	ReservedAt time.Time `json:"reserved_at"`
	// Pool is the pool it is held in; empty for lifecycles started
	// before pools.
	Pool string `json:"pool,omitempty"`
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
	// Priority orders the queue (critical, high, medium, low; empty is
	// medium). Sent as SignalReserve only.
	Priority string `json:"priority,omitempty"`
	// Wait queues a request that does not fit instead of refusing it.
	// SignalReserve only: an update cannot wait that long.
	Wait bool `json:"wait,omitempty"`
	// Pool is the pool to reserve in (pools.go); empty reserves in the
	// root alone, as lifecycles started before pools do.
	Pool string `json:"pool,omitempty"`
}

// BudgetAnswer is the ledger's answer to a SignalReserve, sent to the
// lifecycle as SignalBudgetAnswer. A queued request gets a Queued answer,
// then a Granted one when it is admitted; a refused one gets Reason alone.
type BudgetAnswer struct {
	WorkerID string `json:"worker_id"`
	Lease    string `json:"lease"`
	Granted  bool   `json:"granted,omitempty"`
	Queued   bool   `json:"queued,omitempty"`
	// Position is the queued request's place in its pool's queue, from 1,
	// when it was queued; it moves up as those ahead are admitted.
	Position int `json:"position,omitempty"`
	// Reason says why a request was refused, as the update would have:
	// "insufficient budget: available X < required Y".
	Reason string `json:"reason,omitempty"`
	// QueueTimeout, with a queued answer, is the pool's queue timeout: how
	// long the request waits when its spawn set none.
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
}

// ReleaseRequest gives a lease's budget back.
type ReleaseRequest struct {
	WorkerID string `json:"worker_id"`
	Lease    string `json:"lease"`
	// Spent is the tokens the worker reported using, settled into the
	// spend windows of its pool and the root when it gives its budget back.
	Spent int64 `json:"spent,omitempty"`
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
	// Queued is what the queue waits for in all; Queue is the queue in
	// the order it is admitted.
	Queued int64         `json:"queued,omitempty"`
	Queue  []QueuedEntry `json:"queue,omitempty"`
	// Pools are the pools below the root, by name; PoolDefaults are the
	// settings of every pool that has none of its own.
	Pools        []PoolView    `json:"pools,omitempty"`
	PoolDefaults *PoolSettings `json:"pool_defaults,omitempty"`
	// Root is the root's spend window and alert threshold, when set;
	// Window its open window, Alert its raised alert.
	Root   *PoolSettings `json:"root,omitempty"`
	Window *WindowView   `json:"window,omitempty"`
	Alert  *AlertView    `json:"alert,omitempty"`
	// LastAlerts is the latest crossing of the root ("root") and of every
	// pool that has had one, raised now or since re-armed, so that an
	// alert raised and cleared between two reads is still seen, even of a
	// pool on the defaults that holds nothing any more.
	LastAlerts map[string]AlertView `json:"last_alerts,omitempty"`
}

// QueuedEntry is one waiting reservation as operators see it.
type QueuedEntry struct {
	// Position is its place in its pool's queue, from 1.
	Position int       `json:"position"`
	Pool     string    `json:"pool,omitempty"`
	WorkerID string    `json:"worker_id"`
	Amount   int64     `json:"amount"`
	Priority string    `json:"priority"`
	Lease    string    `json:"lease"`
	Since    time.Time `json:"since"`
}

// WorkerAllocation is one live worker's share.
type WorkerAllocation struct {
	WorkerID string `json:"worker_id"`
	Amount   int64  `json:"amount"`
	// Lease names the lifecycle holding it: its workflow ID and first run ID.
	Lease      string    `json:"lease"`
	ReservedAt time.Time `json:"reserved_at"`
	Pool       string    `json:"pool,omitempty"`
}

// ErrTypeLedgerRefused marks a refused ledger update that is not about the
// amount (a bad request, a conflicting lease).
const ErrTypeLedgerRefused = "LedgerRefused"

// ErrTypeLedgerClosing marks an UpdateAsk the ledger turned away because
// its run is closing for continue-as-new: nothing was written, and the
// same request sent as SignalReserve is answered by the next run.
const ErrTypeLedgerClosing = "LedgerClosing"

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
	l := &ledger{st: st, ctx: ctx, releases: workflow.GetSignalChannel(ctx, SignalRelease)}
	if err := l.register(ctx); err != nil {
		return err
	}
	if len(l.st.Alerts) > 0 {
		l.showAlerts(ctx) // the details of the previous run are not carried
	}
	releases := l.releases
	reserves := workflow.GetSignalChannel(ctx, SignalReserve)
	// What the previous run handed over unapplied comes first, in order.
	carriedReleases, carried := l.st.CarriedReleases, l.st.Carried
	l.st.CarriedReleases, l.st.Carried = nil, nil
	for _, req := range carriedReleases {
		l.releaseSignalled(ctx, req)
	}
	for _, req := range carried {
		l.reserveSignalled(ctx, req)
	}
	// Each signal is taken as it comes, until the run starts to close
	// (l.closing): from then on they stay in their channels and are handed
	// to the next run.
	workflow.Go(ctx, func(ctx workflow.Context) {
		for workflow.Await(ctx, func() bool { return l.closing || releases.Len() > 0 }) == nil && !l.closing {
			var req ReleaseRequest
			releases.ReceiveAsync(&req)
			l.releaseSignalled(ctx, req)
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for workflow.Await(ctx, func() bool { return l.closing || reserves.Len() > 0 }) == nil && !l.closing {
			var req ReserveRequest
			reserves.ReceiveAsync(&req)
			l.reserveSignalled(ctx, req)
		}
	})
	// Disconnected: a cancel (which the ledger survives) must not leave
	// queued events that its close would wait for.
	eventsCtx, _ := workflow.NewDisconnectedContext(ctx)
	workflow.Go(eventsCtx, l.raiseEvents)
	err := l.sleep(ctx)
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
	// While a fleet is upgraded (SetReserveBySignal(false)) the close stays
	// the previous release's: a run that closed here may be continued by a
	// worker program of that release, which would drop what is handed over.
	if workflow.GetVersion(ctx, VersionLedgerClosing, workflow.DefaultVersion, reserveSignalMax) == 1 {
		// A cancel while the run closes must not end the ledger either;
		// and the signals that keep coming are handed over unapplied, so
		// that their answers cannot hold the run open for ever.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
		l.closing = true
		// Accepted updates and answers on their way finish in this run:
		// an answer that cannot be delivered releases its grant.
		if err := workflow.Await(ctx, func() bool {
			return workflow.AllHandlersFinished(ctx) && l.answering == 0 && len(l.events) == 0 && !l.raising
		}); err != nil {
			return err
		}
		for {
			var req ReleaseRequest
			if !releases.ReceiveAsync(&req) {
				break
			}
			l.st.CarriedReleases = append(l.st.CarriedReleases, req)
		}
		for {
			var req ReserveRequest
			if !reserves.ReceiveAsync(&req) {
				break
			}
			l.st.Carried = append(l.st.Carried, req)
		}
		l.st.UpdatesThisRun = 0
		return workflow.NewContinueAsNewError(ctx, BudgetLedger, l.st)
	}
	// The released ledger's close, which runs that began before
	// VersionLedgerClosing replay: accepted updates finish, and the
	// releases received but not applied are applied now.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
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

// sleep waits until the run should close, waking at the end of each spend
// window (a durable timer; none while no window is set) to reset it and
// admit what it held back.
func (l *ledger) sleep(ctx workflow.Context) error {
	closing := func() bool {
		return l.st.UpdatesThisRun >= ledgerUpdatesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
	}
	for {
		// Checked on every wake rather than when the timer fires: a
		// window may end while the run is busy or closing, or before a
		// new run starts.
		if l.windowsEnded(ctx) {
			l.resetWindows(ctx)
		}
		d, windows := l.nextReset(ctx)
		woken := func() bool { return closing() || l.rearm }
		var err error
		if windows {
			_, err = workflow.AwaitWithTimeout(ctx, d, woken)
		} else {
			err = workflow.Await(ctx, woken)
		}
		if err != nil || closing() {
			return err
		}
		l.rearm = false
	}
}

type ledger struct {
	st LedgerState
	// ctx is the run's context, for the time in views and checks.
	ctx workflow.Context
	// rearm wakes the main loop to set its window timer again.
	rearm bool
	// answering counts answers sent and not yet delivered.
	answering int
	// closing is set when the run starts to close: signals are no longer
	// taken, and are handed to the next run.
	closing bool
	// releases are the release signals, taken by their own loop.
	releases workflow.ReceiveChannel
	// events are the budget alerts to append to the fleet's event log,
	// which raiseEvents does; raising is set while it does one, and raised
	// counts them in this run.
	events  []Event
	raising bool
	raised  int
}

// raiseEvents appends the ledger's events to the fleet's event log, one
// at a time, apart from the decisions that raise them.
func (l *ledger) raiseEvents(ctx workflow.Context) {
	for workflow.Await(ctx, func() bool { return len(l.events) > 0 }) == nil {
		ev := l.events[0]
		l.events = l.events[1:]
		l.raising = true
		l.raised++
		raiseEvent(ctx, ev, l.raised)
		l.raising = false
	}
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
		v.Allocations = append(v.Allocations, WorkerAllocation{WorkerID: id, Amount: a.Amount, Lease: a.Lease, ReservedAt: a.ReservedAt, Pool: a.Pool})
		v.Used += a.Amount
	}
	sort.Slice(v.Allocations, func(i, j int) bool { return v.Allocations[i].WorkerID < v.Allocations[j].WorkerID })
	v.Available = v.Total - v.Used
	for i, q := range l.st.Queue {
		v.Queue = append(v.Queue, QueuedEntry{Position: l.position(i), Pool: q.Pool, WorkerID: q.WorkerID, Amount: q.Amount, Priority: q.Priority, Lease: q.Lease, Since: q.Since})
		v.Queued += q.Amount
	}
	v.Pools = l.poolViews()
	if d := l.st.PoolDefaults; d != (PoolSettings{}) {
		v.PoolDefaults = &d
	}
	if r := l.st.Root; r != (PoolSettings{}) {
		v.Root = &r
	}
	v.Window, v.Alert, v.LastAlerts = l.windowView(l.ctx, PoolRoot), l.alertView(PoolRoot), l.lastAlerts()
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
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateAsk, l.ask,
		workflow.UpdateHandlerOptions{Validator: l.validateAsk}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRelease, l.release,
		workflow.UpdateHandlerOptions{Validator: l.validateRelease}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePoolSet, l.poolSet,
		workflow.UpdateHandlerOptions{Validator: l.validatePoolSet}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePoolDelete, l.poolDelete,
		workflow.UpdateHandlerOptions{Validator: l.validatePoolDelete}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateSetTotal, l.setTotal,
		workflow.UpdateHandlerOptions{Validator: l.validateSetTotal})
}

// validateReserve refuses before anything is written to history. An update
// rejected here leaves no trace but the error its caller gets.
func (l *ledger) validateReserve(req ReserveRequest) error {
	if l.releasePending(req) && !heldBack[VersionReleaseBeforeReserve] {
		// The handler waits for the releases, then checks it all again.
		return cmp.Or(l.checkRequest(req), checkPriority(req))
	}
	return l.checkReserve(req)
}

// checkReserve is the reserve update's whole check.
func (l *ledger) checkReserve(req ReserveRequest) error {
	if err := l.checkReservation(req); err != nil {
		return err
	}
	if _, ok := l.st.Allocations[req.WorkerID]; ok {
		return nil // a retry: the handler returns what is held
	}
	// The update answers for the amount alone, as it always has: it is
	// what `budget recalc` restores a running worker's lost allocation
	// with, which no queue may hold back, and what lifecycles started
	// before the queue reserve with.
	if available := l.st.Total - l.used(); req.Amount > available {
		return budgetRefused(fmt.Sprintf("%s: available %d < required %d", activities.ErrBudgetRefused, available, req.Amount))
	}
	return nil
}

// checkReservation refuses a request that is malformed, conflicts with
// what another lifecycle of the worker holds, or whose lease was released.
func (l *ledger) checkReservation(req ReserveRequest) error {
	if err := l.checkRequest(req); err != nil {
		return err
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
	return checkPriority(req)
}

// checkRequest checks the worker id, lease and amount a reservation gives,
// not what the ledger holds; its priority is checked last (checkPriority),
// after the ledger's own checks, as checkReservation has always answered.
func (l *ledger) checkRequest(req ReserveRequest) error {
	if !WorkerIDPattern.MatchString(req.WorkerID) || req.Lease == "" {
		return refused(fmt.Sprintf("invalid reservation: worker id %q, lease %q", req.WorkerID, req.Lease))
	}
	if req.Amount < MinBudget || req.Amount > MaxBudget {
		return refused(fmt.Sprintf("budget %d is not in %d..%d", req.Amount, MinBudget, MaxBudget))
	}
	return nil
}

func checkPriority(req ReserveRequest) error {
	if req.Priority != "" && !ValidPriority(req.Priority) {
		return refused(fmt.Sprintf("priority %s must be one of low, medium, high, critical", Quote(req.Priority)))
	}
	return nil
}

// releasePending says whether a reservation meets its worker's allocation
// under another lease while release signals wait unapplied: one of them
// may be that allocation's. It happens when a worker is spawned again as
// soon as its last lifecycle ended, whose release reached the ledger in
// the same workflow task as the new reservation; an update's handler runs
// before the loop that applies the releases.
func (l *ledger) releasePending(req ReserveRequest) bool {
	held, ok := l.st.Allocations[req.WorkerID]
	return ok && held.Lease != req.Lease && l.releases.Len() > 0 && !l.closing
}

// awaitReleases lets the releases waiting be applied before a reservation
// that releasePending, so that it is judged on what the ledger holds once
// they are (VersionReleaseBeforeReserve).
// It says whether it waited.
func (l *ledger) awaitReleases(ctx workflow.Context, req ReserveRequest) bool {
	if !l.releasePending(req) || versionOf(ctx, VersionReleaseBeforeReserve, 1) != 1 {
		return false
	}
	// The run may start to close (or be cancelled) meanwhile; its releases
	// then go to the next run, and the reservation is judged on what this
	// one holds.
	_ = workflow.Await(ctx, func() bool { return l.releases.Len() == 0 || l.closing })
	return true
}

func budgetRefused(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrTypeBudgetRefused, nil)
}

func (l *ledger) reserve(ctx workflow.Context, req ReserveRequest) (BudgetView, error) {
	if l.awaitReleases(ctx, req) {
		// Judged on what the ledger holds now, without the validator's
		// allowance for releases still waiting: one that could not be
		// applied (the run closing) leaves the conflict standing. Accepted
		// on that allowance, a refusal is in the history: it counts.
		if err := l.checkReserve(req); err != nil {
			l.st.UpdatesThisRun++
			return l.view(), err
		}
	} else if err := l.validateReserve(req); err != nil {
		return l.view(), err
	}
	if _, ok := l.st.Allocations[req.WorkerID]; !ok {
		l.st.Allocations[req.WorkerID] = Allocation{Lease: req.Lease, Amount: req.Amount, ReservedAt: workflow.Now(ctx).UTC(), Pool: req.Pool}
		l.st.UpdatesThisRun++
		// Less room can still unblock a request: one that waited behind
		// a pool's head which now waits on its pool's limits instead.
		l.admit(ctx)
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
// already, or never reserved) gets 0 and changes nothing. A release of a
// queued request withdraws it. Whatever it frees admits the queue's head.
func (l *ledger) release(ctx workflow.Context, req ReleaseRequest) (int64, error) {
	held, ok := l.st.Allocations[req.WorkerID]
	if !ok || held.Lease != req.Lease {
		l.remember(req.Lease)
		if l.dequeue(req.Lease) {
			l.admit(ctx)
		}
		return 0, nil
	}
	delete(l.st.Allocations, req.WorkerID)
	l.remember(req.Lease)
	l.settle(ctx, held.Pool, req.Spent)
	l.st.UpdatesThisRun++
	l.admit(ctx)
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
	if err := l.checkTotal(req.Total); err != nil {
		return refused(err.Error())
	}
	return nil
}

func (l *ledger) setTotal(ctx workflow.Context, req SetTotalRequest) (BudgetView, error) {
	if err := l.validateSetTotal(req); err != nil {
		return l.view(), err
	}
	l.st.Total = req.Total
	l.st.UpdatesThisRun++
	l.admit(ctx)
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

// reserveSignalled takes a reservation sent as a signal and answers it
// with a signal back.
func (l *ledger) reserveSignalled(ctx workflow.Context, req ReserveRequest) {
	l.answer(ctx, l.decide(ctx, req))
}

// validateAsk turns an ask away, unwritten, while the run closes: its
// handler would have to finish in this run, which may then never close
// under a steady stream of asks. The asker sends it as a signal instead.
func (l *ledger) validateAsk(ReserveRequest) error {
	if l.closing {
		return temporal.NewApplicationError("the budget ledger is continuing as new; send the reservation as a signal", ErrTypeLedgerClosing)
	}
	return nil
}

// ask is a reservation answered in the update's result, by the same rules
// as the signal.
func (l *ledger) ask(ctx workflow.Context, req ReserveRequest) (BudgetAnswer, error) {
	l.awaitReleases(ctx, req)
	return l.decide(ctx, req), nil
}

// decide takes a reservation and says what became of it: granted at once
// when it fits and nothing of its priority or higher waits, queued when it
// may wait, refused otherwise. A retry of the same lease gets the answer
// again and changes nothing.
func (l *ledger) decide(ctx workflow.Context, req ReserveRequest) BudgetAnswer {
	ans := BudgetAnswer{WorkerID: req.WorkerID, Lease: req.Lease}
	if err := l.checkReservation(req); err != nil {
		ans.Reason = applicationMessage(err)
		return ans
	}
	if _, ok := l.st.Allocations[req.WorkerID]; ok {
		ans.Granted = true
		return ans
	}
	if l.dropStale(req) && workflow.GetVersion(ctx, VersionAdmitAfterStale, workflow.DefaultVersion, 1) == 1 {
		// The dropped request may have held back others that fit now.
		l.admit(ctx)
	}
	if i := l.queued(req.Lease); i >= 0 {
		ans.Queued, ans.Position, ans.QueueTimeout = true, l.position(i), l.queueTimeout(req.Pool)
		return ans
	}
	l.st.UpdatesThisRun++
	if why := l.impossible(req.Pool, req.Amount); req.Wait && why != "" {
		ans.Reason = why
		return ans
	}
	// The request takes its place in the queue and is granted at once if
	// it is the first that may be admitted: it fits, and nothing it must
	// not overtake waits.
	seq := l.st.NextSeq
	i := l.enqueue(ctx, req)
	first, why := l.next(i)
	switch {
	case first == i:
		l.st.Queue = append(l.st.Queue[:i], l.st.Queue[i+1:]...)
		l.st.NextSeq = seq // numbers count the requests that waited
		l.st.Allocations[req.WorkerID] = Allocation{Lease: req.Lease, Amount: req.Amount, ReservedAt: workflow.Now(ctx).UTC(), Pool: req.Pool}
		ans.Granted = true
		l.checkAlerts(ctx)
	case req.Wait:
		ans.Queued, ans.Position, ans.QueueTimeout = true, l.position(i), l.queueTimeout(req.Pool)
	default:
		if why == "" {
			// Another request may be admitted first (a freed head not
			// yet admitted); this one must not pass it.
			why = l.behind(l.usage(), l.position(i)-1, orDefault(req.Priority, DefaultPriority))
		}
		l.st.Queue = append(l.st.Queue[:i], l.st.Queue[i+1:]...)
		l.st.NextSeq = seq
		ans.Reason = why
	}
	return ans
}

// priorityRank orders priorities for the queue, critical first; an empty
// priority is the default one.
func priorityRank(p string) int {
	switch orDefault(p, DefaultPriority) {
	case "critical":
		return 0
	case "high":
		return 1
	case "medium":
		return 2
	}
	return 3
}

// queuedAhead counts the queued requests a new request of priority p must
// not overtake: those of its priority or higher.
func (l *ledger) queuedAhead(p string) int {
	n := 0
	for _, q := range l.st.Queue {
		if priorityRank(q.Priority) <= priorityRank(p) {
			n++
		}
	}
	return n
}

// enqueue places req after every request of its priority or higher and
// returns its index.
func (l *ledger) enqueue(ctx workflow.Context, req ReserveRequest) int {
	l.st.NextSeq++
	q := QueuedRequest{WorkerID: req.WorkerID, Lease: req.Lease, Amount: req.Amount, Pool: req.Pool,
		Priority: orDefault(req.Priority, DefaultPriority), Seq: l.st.NextSeq, Since: workflow.Now(ctx).UTC()}
	i := l.queuedAhead(q.Priority)
	l.st.Queue = append(l.st.Queue, QueuedRequest{})
	copy(l.st.Queue[i+1:], l.st.Queue[i:])
	l.st.Queue[i] = q
	return i
}

// queued returns the index of the lease's queued request, or -1.
func (l *ledger) queued(lease string) int {
	for i, q := range l.st.Queue {
		if q.Lease == lease {
			return i
		}
	}
	return -1
}

// dropStale withdraws a queued request of the same worker under another
// lease: only one lifecycle of a worker id runs at a time, so a new one
// asking means the older one has ended (terminated, say) without
// withdrawing. Left queued, it would be granted to nobody.
func (l *ledger) dropStale(req ReserveRequest) bool {
	for _, q := range l.st.Queue {
		if q.WorkerID == req.WorkerID && q.Lease != req.Lease {
			l.dequeue(q.Lease)
			l.remember(q.Lease)
			return true
		}
	}
	return false
}

// dequeue withdraws the lease's queued request, if any.
func (l *ledger) dequeue(lease string) bool {
	i := l.queued(lease)
	if i < 0 {
		return false
	}
	l.st.Queue = append(l.st.Queue[:i], l.st.Queue[i+1:]...)
	l.st.UpdatesThisRun++
	return true
}

// admit grants queued requests for as long as one may be admitted, in the
// queue's order and by its rules (next, pools.go): without pools, a head
// that does not fit holds back everything behind it (strict FIFO within
// the priority order), so a large request is never starved by small ones.
// It runs wherever room is made, so the first refund that makes room
// admits at once, with no polling.
func (l *ledger) admit(ctx workflow.Context) {
	// A lowered total, quota or limit can leave a queued request that can
	// never be admitted: it is refused rather than left to hold back the
	// queue for ever.
	for i := 0; i < len(l.st.Queue); {
		q := l.st.Queue[i]
		why := l.impossible(q.Pool, q.Amount)
		if why == "" {
			i++
			continue
		}
		l.st.Queue = append(l.st.Queue[:i], l.st.Queue[i+1:]...)
		l.remember(q.Lease)
		l.answer(ctx, BudgetAnswer{WorkerID: q.WorkerID, Lease: q.Lease, Reason: why})
	}
	for {
		i, _ := l.next(-1)
		if i < 0 {
			l.checkAlerts(ctx)
			return
		}
		head := l.st.Queue[i]
		l.st.Queue = append(l.st.Queue[:i], l.st.Queue[i+1:]...)
		if held, ok := l.st.Allocations[head.WorkerID]; ok {
			// Another lifecycle of the worker holds an allocation: this
			// request cannot be granted without losing it.
			l.remember(head.Lease)
			l.answer(ctx, BudgetAnswer{WorkerID: head.WorkerID, Lease: head.Lease,
				Reason: fmt.Sprintf("worker %s already holds %d tokens for another lifecycle", head.WorkerID, held.Amount)})
			continue
		}
		l.st.Allocations[head.WorkerID] = Allocation{Lease: head.Lease, Amount: head.Amount, ReservedAt: workflow.Now(ctx).UTC(), Pool: head.Pool}
		l.answer(ctx, BudgetAnswer{WorkerID: head.WorkerID, Lease: head.Lease, Granted: true})
	}
}

// answer signals the lifecycle. An answer that cannot be delivered (the
// lifecycle was terminated) would leave what it grants or queues held by
// nobody: it is released, which may admit the next request.
func (l *ledger) answer(ctx workflow.Context, a BudgetAnswer) {
	l.answering++
	// Disconnected: a cancel of the ledger (which carries on) must not
	// cancel an answer on its way and have its grant released.
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	f := workflow.SignalExternalWorkflow(ctx, WorkflowID(a.WorkerID), "", SignalBudgetAnswer, a)
	workflow.Go(ctx, func(gctx workflow.Context) {
		err := f.Get(gctx, nil)
		l.answering--
		if err == nil || (!a.Granted && !a.Queued) {
			return
		}
		workflow.GetLogger(ctx).Warn("Budget answer not delivered; releasing what it gave",
			"worker_id", a.WorkerID, "lease", a.Lease, "error", err)
		_, _ = l.release(ctx, ReleaseRequest{WorkerID: a.WorkerID, Lease: a.Lease})
	})
}

// applicationMessage is the message of a refusal, without the type and
// retry notes its Error adds.
func applicationMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}
