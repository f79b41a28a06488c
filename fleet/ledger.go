package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Budget talks to the budget ledger workflow, starting it with the default
// total the first time anyone needs it. Operators show it, set its total
// and reconcile it (Client.RecalcBudget, which reserves and releases here
// too); the worker program's lifecycles reserve and release through
// adapters.Ledger, which wraps this.
type Budget struct {
	temporal client.Client
}

// NewBudget returns the budget ledger's client on a connection the caller
// owns; Client.Budget gives the same on a Client's connection.
func NewBudget(c client.Client) *Budget { return &Budget{temporal: c} }

// Reserve allocates amount to the lease; a refusal wraps ErrBudgetRefused.
// A reservation repeated with the same lease is a no-op.
func (l *Budget) Reserve(ctx context.Context, workerID, lease string, amount int64) error {
	return l.reserve(ctx, "reserve/"+lease, workerID, lease, "", amount)
}

// Restore puts back the allocation of a running lifecycle that the ledger
// lost (budget recalc), in its pool. Like the reserve update it answers for
// the amount alone: no pool limit or queue holds back what already runs.
func (l *Budget) Restore(ctx context.Context, workerID, lease, pool string, amount int64) error {
	return l.reserve(ctx, "reserve/"+lease, workerID, lease, pool, amount)
}

// Recheck asks the ledger again whether the lease holds its allocation: nil
// if it does (or the ledger, lost and started anew, could reserve it again),
// an error if it was released or no longer fits. Unlike a repeated Reserve,
// whose update ID makes the server answer from its cache within a ledger
// run, it always reaches the ledger.
func (l *Budget) Recheck(ctx context.Context, workerID, lease, pool string, amount int64) error {
	return l.reserve(ctx, "", workerID, lease, pool, amount)
}

func (l *Budget) reserve(ctx context.Context, updateID, workerID, lease, pool string, amount int64) error {
	err := l.update(ctx, workflows.UpdateReserve, updateID,
		workflows.ReserveRequest{WorkerID: workerID, Lease: lease, Amount: amount, Pool: pool}, nil)
	if workflows.IsBudgetRefused(err) {
		return fmt.Errorf("%w%s", ErrBudgetRefused, trimPrefix(err, ErrBudgetRefused.Error()))
	}
	return err
}

// Ask sends a reservation as a signal, starting the ledger if there is
// none; the ledger answers the lease's lifecycle with
// workflows.SignalBudgetAnswer (granted, queued or refused). It is what
// lifecycles use: a signal waits for no answer and is not held to the
// server's limit of updates in flight, and it can wait in the queue.
func (l *Budget) Ask(ctx context.Context, req workflows.ReserveRequest) error {
	_, err := l.temporal.SignalWithStartWorkflow(ctx, workflows.LedgerWorkflowID, workflows.SignalReserve, req,
		l.startOptions(), workflows.BudgetLedger, workflows.NewLedgerState(workflows.DefaultBudgetTotal))
	return err
}

// Give releases the lease with the ledger's release signal, as the
// lifecycles do: no answer, so what it gave back is what the caller knows
// the lease held. A second release of a lease gives back nothing. It
// fails with serviceerror.NotFound when no ledger runs; Settle is then
// the way.
func (l *Budget) Give(ctx context.Context, workerID, lease string, spent int64) error {
	return l.temporal.SignalWorkflow(ctx, workflows.LedgerWorkflowID, "", workflows.SignalRelease,
		workflows.ReleaseRequest{WorkerID: workerID, Lease: lease, Spent: spent})
}

// askWithin bounds the ask update's call. The SDK retries an update the
// server turns away for its in-flight limit until the caller's deadline,
// which would spend the whole activity's; past this bound the request goes
// as the signal instead. A variable so that tests can shorten it.
var askWithin = 5 * time.Second

// Request asks for a reservation with the ask update and returns the
// ledger's answer (granted, queued or refused) with answered true. It is
// what lifecycles use: the answer comes in the call, in the ledger's next
// workflow task, with nothing sent back into the lifecycle.
//
// When the ledger cannot take the update, the request goes as the reserve
// signal instead (Ask) and answered is false: the answer then comes to the
// lease's lifecycle as workflows.SignalBudgetAnswer. That is when the server
// turns the update away (more in flight than it admits per workflow: the
// SDK retries those until askWithin has passed), when the ledger is closing
// its run for continue-as-new, when there is no ledger yet (the signal
// starts it), when the running ledger is of a release without the update,
// or when the call fails on its way. A request the ledger took before the
// call failed is answered again, as it stands: the ledger knows each lease
// once. An error is returned when ctx ends, or when the signal cannot be
// sent either.
func (l *Budget) Request(ctx context.Context, req workflows.ReserveRequest) (ans workflows.BudgetAnswer, answered bool, err error) {
	uctx, cancel := context.WithTimeout(ctx, askWithin)
	defer cancel()
	h, err := l.temporal.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.LedgerWorkflowID,
		UpdateName:   workflows.UpdateAsk,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(uctx, &ans)
	}
	if err == nil {
		return ans, true, nil
	}
	if ctx.Err() != nil {
		return workflows.BudgetAnswer{}, false, ctx.Err()
	}
	return workflows.BudgetAnswer{}, false, l.Ask(ctx, req)
}

// Release gives the lease's allocation back and says how much it was. A
// lease the ledger never held is refused with ErrUnknownLease, unwritten.
func (l *Budget) Release(ctx context.Context, workerID, lease string) (int64, error) {
	return l.Settle(ctx, workerID, lease, 0)
}

// Settle is Release by the lifecycle that held the lease, with what its
// worker spent, which the ledger adds to its pool's and the root's spend
// windows.
func (l *Budget) Settle(ctx context.Context, workerID, lease string, spent int64) (int64, error) {
	var released int64
	err := l.update(ctx, workflows.UpdateRelease, "release/"+lease,
		workflows.ReleaseRequest{WorkerID: workerID, Lease: lease, Spent: spent}, &released)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeUnknownLease {
		return 0, fmt.Errorf("%w%s", ErrUnknownLease, strings.TrimPrefix(appErr.Message(), ErrUnknownLease.Error()))
	}
	return released, err
}

// SetTotal changes the ledger's total.
func (l *Budget) SetTotal(ctx context.Context, total int64) (workflows.BudgetView, error) {
	var v workflows.BudgetView
	err := l.update(ctx, workflows.UpdateSetTotal, "", workflows.SetTotalRequest{Total: total}, &v)
	if msg := applicationMessage(err); msg != "" {
		return v, fmt.Errorf("budget set refused: %s", msg)
	}
	return v, err
}

// SetPool configures a budget pool (workflows.PoolSettings), or with name
// "" the defaults of every pool without settings of its own, or with name
// workflows.PoolRoot the root's spend window and alert threshold. With fields
// (workflows.PoolFields), only those settings are taken from s and the
// ledger keeps the others as they are; s must then be the settings as the
// caller expects them to be after the change, which are checked here.
// Settings that are wrong on their own are ErrInvalid before any call;
// what the ledger refuses against its state (a quota above the total)
// changes nothing and says why.
func (l *Budget) SetPool(ctx context.Context, name string, s workflows.PoolSettings, fields ...string) (workflows.BudgetView, error) {
	req := workflows.PoolSetRequest{Name: name, Defaults: name == "", Settings: s, Fields: fields}
	if _, err := s.Merge(workflows.PoolSettings{}, fields); err != nil {
		return workflows.BudgetView{}, invalidField("pool", "%s", err)
	}
	if name == workflows.PoolRoot {
		if err := s.ValidateRoot(); err != nil {
			return workflows.BudgetView{}, invalidField("pool", "%s", err)
		}
	} else if name != "" {
		if err := workflows.ValidatePoolName(name); err != nil {
			return workflows.BudgetView{}, invalidField("pool", "%s", err)
		}
	}
	if err := s.Validate(); err != nil {
		what := "pool " + name
		if name == "" {
			what = "pool defaults"
		}
		return workflows.BudgetView{}, invalidField("pool", "%s: %s", what, err)
	}
	var v workflows.BudgetView
	err := l.update(ctx, workflows.UpdatePoolSet, "", req, &v)
	if msg := applicationMessage(err); msg != "" {
		return v, fmt.Errorf("budget pool set refused: %s", msg)
	}
	return v, err
}

// DeletePool removes a pool's settings; a pool that holds or waits for
// budget is refused.
func (l *Budget) DeletePool(ctx context.Context, name string) (workflows.BudgetView, error) {
	if err := workflows.ValidatePoolName(name); err != nil {
		return workflows.BudgetView{}, invalidField("pool", "%s", err)
	}
	var v workflows.BudgetView
	err := l.update(ctx, workflows.UpdatePoolDelete, "", workflows.PoolDeleteRequest{Name: name}, &v)
	if msg := applicationMessage(err); msg != "" {
		return v, fmt.Errorf("budget pool delete refused: %s", msg)
	}
	return v, err
}

// Show returns the ledger's state, starting the ledger if there is none yet.
func (l *Budget) Show(ctx context.Context) (workflows.BudgetView, error) {
	var v workflows.BudgetView
	resp, err := l.query(ctx)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// None yet, or the last one was terminated: a query would answer
		// from its closed history, while every update goes to a new one.
		_, serr := l.temporal.ExecuteWorkflow(ctx, l.startOptions(), workflows.BudgetLedger, workflows.NewLedgerState(workflows.DefaultBudgetTotal))
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if serr != nil && !errors.As(serr, &started) {
			return v, fmt.Errorf("starting the budget ledger: %w", serr)
		}
		// A workflow just started can take a moment to answer queries.
		for try := 0; try < 50; try++ {
			if resp, err = l.query(ctx); !errors.As(err, &notFound) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err != nil {
		return v, fmt.Errorf("querying the budget ledger: %w", err)
	}
	return v, resp.Get(&v)
}

// query asks the open ledger; a closed one counts as not found.
func (l *Budget) query(ctx context.Context) (converter.EncodedValue, error) {
	resp, err := l.temporal.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID:           workflows.LedgerWorkflowID,
		QueryType:            workflows.QueryBudget,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		return nil, err
	}
	if resp.QueryRejected != nil {
		return nil, serviceerror.NewNotFound("the budget ledger has ended")
	}
	return resp.QueryResult, nil
}

func (l *Budget) startOptions() client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       workflows.LedgerWorkflowID,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
}

// update sends an update to the running ledger, starting the ledger first
// when there is none. The update ID makes a retried reserve or release a
// no-op on the server as well as in the ledger.
//
// A plain update, not update-with-start, is the common path: on Temporal
// server 1.29 with PostgreSQL, tens of concurrent update-with-start calls
// on one running workflow make the server abort the updates in flight
// ("workflow update was aborted"), the callers retry at once and the ledger
// stalls; plain updates queue behind the in-flight limit instead
// (docs/DEPLOYMENT.md, section 7).
func (l *Budget) update(ctx context.Context, name, updateID string, arg, result any) error {
	opts := client.UpdateWorkflowOptions{
		WorkflowID:   workflows.LedgerWorkflowID,
		UpdateName:   name,
		UpdateID:     updateID,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	h, err := l.temporal.UpdateWorkflow(ctx, opts)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// No ledger yet, or the last run ended (cancelled, terminated):
		// start one, or join whoever started it a moment ago.
		op := l.temporal.NewWithStartWorkflowOperation(l.startOptions(), workflows.BudgetLedger, workflows.NewLedgerState(workflows.DefaultBudgetTotal))
		h, err = l.temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: op, UpdateOptions: opts})
	}
	if err != nil {
		return err
	}
	return h.Get(ctx, result)
}

// trimPrefix keeps what follows prefix in err's message (": available X <
// required Y"), so the wrapped error reads as the ledger said it.
func trimPrefix(err error, prefix string) string {
	msg := applicationMessage(err)
	if len(msg) >= len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return ": " + msg
}
