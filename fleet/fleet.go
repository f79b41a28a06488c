// Package fleet is the client of the worker lifecycle manager, for masters,
// agents and operators alike: the starter CLI is built on it, so a program
// that imports it does what the CLI does, by the same path. It spawns
// workers (Client.Spawn), reads them (Status, List, Wait), heartbeats them
// (Heartbeat, and Heartbeater for an agent's loop), stops them (Shutdown,
// Kill, Cleanup), shows and sets the budget (Client.Budget), and sets up,
// checks, sweeps and archives the server for operators.
//
// Every request is validated before it reaches Temporal, with the messages
// the lifecycle itself would fail with, so bad input changes nothing. Errors
// are typed so that a caller can branch on them: errors.Is with
// ErrUnknownWorker, ErrEnded, ErrAlreadyLive, ErrBudgetRefused, ErrSpawnFailed
// and ErrInvalid, and errors.As with *InvalidError for the bad fields.
//
// The payloads (workflows.SpawnRequest, workflows.Heartbeat,
// workflows.WorkerSpec...) are the wire contract of docs/API.md, declared
// once in package workflows.
//
// It is not the worker program's side: the implementations of the
// activities' interfaces over Temporal (the ledger's reserve and release,
// the watcher's reports, the breakers, the archive, the sweep's view of the
// fleet) live in internal/adapters, which builds on this package; this
// package never imports it, and uses the activities package only for the
// data types an operator call returns.
package fleet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Client spawns and steers lifecycles. It is safe for concurrent use.
type Client struct {
	temporal client.Client
	// types fill a request's defaults: the worker types the worker
	// programs run, so that a spawn asks for what the host will start.
	types     *workertypes.Registry
	startWait time.Duration
}

// Options configure a Client.
type Options struct {
	// WorkerTypesFile is the worker types file the worker programs run with
	// (their --worker-types); empty means the built-in types. Spawn fills a
	// request's budget, time limit, restarts and heartbeat mode from it.
	WorkerTypesFile string
	// StartWait bounds how long Spawn waits for a lifecycle to leave
	// pending; zero means 30 seconds.
	StartWait time.Duration
}

// New returns a client on a Temporal connection that the caller owns and
// closes. A nil connection gives an offline client, which can only check
// requests (Resolve, ReadSpec).
func New(c client.Client, o Options) (*Client, error) {
	types, err := workertypes.Load(o.WorkerTypesFile)
	if err != nil {
		return nil, err
	}
	if o.StartWait < 0 {
		return nil, fmt.Errorf("%w: start wait %s is negative", ErrInvalid, o.StartWait)
	}
	if o.StartWait == 0 {
		o.StartWait = 30 * time.Second
	}
	return &Client{temporal: c, types: types, startWait: o.StartWait}, nil
}

// Temporal is the connection the client was made with, for what this
// package does not cover (the Temporal SDK's own calls).
func (f *Client) Temporal() client.Client { return f.temporal }

// Resolve fills a spawn request's defaults from the worker type (budget,
// time limit, restarts when MaxRestarts < 0, heartbeat mode, priority,
// worker id) and validates it, naming every bad field.
func (f *Client) Resolve(req workflows.SpawnRequest) (workflows.SpawnRequest, error) {
	if len(req.WorkerType) > workflows.MaxIDLength {
		return req, invalidField("worker_type", "unknown worker type %s", workflows.Quote(req.WorkerType))
	}
	t, err := f.types.Lookup(req.WorkerType)
	if err != nil {
		return req, invalidField("worker_type", "%v", err)
	}
	req.WorkerType = t.Name
	if req.Budget == 0 {
		req.Budget = t.TokenBudget
	}
	if req.MaxRestarts < 0 {
		req.MaxRestarts = t.MaxRestarts
	}
	if req.HeartbeatMode == "" {
		req.HeartbeatMode = t.Heartbeat
	}
	if req.Timeout == 0 {
		req.Timeout = t.Timeout()
	}
	if req.Priority == "" {
		req.Priority = workflows.DefaultPriority
	}
	if req.WorkerID == "" {
		req.WorkerID = NewWorkerID(t.Name)
	}
	if err := req.Validate(); err != nil {
		return req, invalid("", err)
	}
	return req, nil
}

// Spawn starts a lifecycle and waits until it has left pending: it returns
// the running worker's spec, or an error saying why it could not start
// (insufficient budget, a spawn failure) with nothing left reserved. A
// request with WaitForBudget that had to queue returns as soon as it is
// queued, pending with spec.Queue set; Wait or Status follow it from there.
func (f *Client) Spawn(ctx context.Context, req workflows.SpawnRequest) (workflows.WorkerSpec, error) {
	req, err := f.Start(ctx, req)
	if err != nil {
		return workflows.WorkerSpec{}, err
	}
	return f.WaitStarted(ctx, req.WorkerID)
}

// Start validates the request and starts its lifecycle without waiting; it
// returns the request with its defaults filled in.
func (f *Client) Start(ctx context.Context, req workflows.SpawnRequest) (workflows.SpawnRequest, error) {
	req, err := f.Resolve(req)
	if err != nil {
		return req, err
	}
	opts := client.StartWorkflowOptions{
		ID:        workflows.WorkflowID(req.WorkerID),
		TaskQueue: workflows.TaskQueue,
		// Without this, starting a running ID returns the existing run as if
		// the spawn had succeeded.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(initialSearchAttributes(req)...),
	}
	if _, err := f.temporal.ExecuteWorkflow(ctx, opts, workflows.WorkerLifecycle, workflows.NewLifecycleState(req)); err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			status := "live"
			if spec, qerr := f.Status(ctx, req.WorkerID); qerr == nil {
				status = string(spec.Status)
			}
			return req, fmt.Errorf("%w: %s is %s; spawn refused", ErrAlreadyLive, req.WorkerID, status)
		}
		return req, fmt.Errorf("starting the lifecycle of %s: %w", req.WorkerID, err)
	}
	return req, nil
}

// initialSearchAttributes make a pending lifecycle visible to list queries
// before its first workflow task runs.
func initialSearchAttributes(req workflows.SpawnRequest) []temporal.SearchAttributeUpdate {
	return workflows.SearchAttributes(workflows.WorkerSpec{Status: workflows.StatusPending,
		WorkerType: req.WorkerType, Master: req.Master, Priority: req.Priority, TaskID: req.TaskID})
}

// WaitStarted waits until the worker has left pending, or is queued for
// budget, and returns its spec, or an error saying why it could not start.
func (f *Client) WaitStarted(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	wait := f.startWait
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var lastErr error
	for {
		spec, err := f.Status(ctx, workerID)
		switch {
		case err != nil:
			lastErr = err
		case spec.Status == workflows.StatusPending && spec.Queue != nil:
			return spec, nil
		case spec.Status == workflows.StatusPending:
		case spec.Status.Live() || spec.Status == workflows.StatusCompleted:
			return spec, nil
		default:
			reason := "unknown reason"
			if spec.Cleanup != nil {
				reason = spec.Cleanup.Reason
			}
			if rest, ok := strings.CutPrefix(reason, ErrBudgetRefused.Error()); ok {
				return spec, fmt.Errorf("%w: %s: %w%s", ErrSpawnFailed, workerID, ErrBudgetRefused, rest)
			}
			return spec, fmt.Errorf("%w: %s: %s", ErrSpawnFailed, workerID, reason)
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return spec, fmt.Errorf("waiting for %s to start: %w", workerID, lastErr)
			}
			return spec, fmt.Errorf("%s is still pending after %s: is a worker program running on task queue %s?", workerID, wait, workflows.TaskQueue)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Budget is the budget ledger on the same connection.
func (f *Client) Budget() *Budget { return NewBudget(f.temporal) }

// Status returns a worker's spec, live or ended; a queued worker's
// position is its place in the queue now.
func (f *Client) Status(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	spec, err := f.status(ctx, workerID)
	if err == nil && spec.Queue != nil {
		f.queuePositions(ctx, []*workflows.WorkerSpec{&spec})
	}
	return spec, err
}

// status is Status with the position the lifecycle recorded.
func (f *Client) status(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	var spec workflows.WorkerSpec
	if err := CheckID(workerID); err != nil {
		return spec, err
	}
	resp, err := f.temporal.QueryWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.QueryStatus)
	if err != nil {
		return spec, f.explain(ctx, workerID, err)
	}
	if err := resp.Get(&spec); err != nil {
		return spec, err
	}
	if spec.Status == "" {
		// Only a lifecycle that never began answers with no status.
		return f.failedStart(ctx, workerID)
	}
	if spec.Heartbeat.Path == workflows.PathHost && (spec.Status == workflows.StatusRunning || spec.Status == workflows.StatusIdle) {
		f.hostHeartbeat(ctx, workerID, &spec)
	}
	// The lifecycle arms no timer for a late heartbeat's warning: the
	// level is read off its clocks, now.
	spec.Heartbeat.Alert = spec.AlertAt(time.Now())
	return spec, nil
}

// hostHeartbeat puts into spec the latest heartbeat the worker's host took,
// which its watch shows in its activity heartbeat, when it is newer than
// the last the lifecycle heard: the host relays only what the lifecycle
// acts on. Without an answer the spec stays the lifecycle's.
func (f *Client) hostHeartbeat(ctx context.Context, workerID string, spec *workflows.WorkerSpec) {
	desc, err := f.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(workerID), "")
	if err != nil {
		return
	}
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != workflows.ActivityWatchProcess || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var d activities.WatchDetails
		if converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &d) != nil || d.Heartbeat == nil {
			continue
		}
		applyHostHeartbeat(spec, *d.Heartbeat)
	}
}

// applyHostHeartbeat puts hb into spec when it is newer than what the
// lifecycle has.
func applyHostHeartbeat(spec *workflows.WorkerSpec, hb activities.HostHeartbeat) {
	h := &spec.Heartbeat
	if h.LastSeen != nil && !hb.At.After(*h.LastSeen) {
		return
	}
	at := hb.At.UTC()
	h.LastSeen, h.Message, h.ReportedHealthScore = &at, hb.Message, hb.HealthScore
	spec.TokenBudget.Used = max(spec.TokenBudget.Used, hb.PriorTokens+hb.TokensUsed)
}

// queuePositions replaces the queue positions the lifecycles recorded when
// they were queued with their places now, from one query of the ledger. A
// ledger that does not answer leaves them as they were.
func (f *Client) queuePositions(ctx context.Context, specs []*workflows.WorkerSpec) {
	v, err := f.Budget().Show(ctx)
	if err != nil {
		return
	}
	for _, s := range specs {
		if s.Queue == nil {
			continue
		}
		for _, q := range v.Queue {
			if q.WorkerID == s.WorkerID {
				s.Queue.Position, s.Queue.Pool = q.Position, q.Pool
			}
		}
	}
}

// failedStart is the spec of a lifecycle that failed before it began: a
// start that skipped validation (a raw start from another client) fails at
// once and its query has nothing to tell. The spec is read from its start
// input and its failure instead, so it says why.
func (f *Client) failedStart(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	spec := workflows.WorkerSpec{WorkerID: workerID}
	iter := f.temporal.GetWorkflowHistory(ctx, workflows.WorkflowID(workerID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var reason string
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return spec, fmt.Errorf("reading the history of %s: %w", workerID, err)
		}
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			spec.CreatedAt = ev.GetEventTime().AsTime().UTC()
			var st workflows.LifecycleState
			if a.GetInput() != nil && converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &st) == nil {
				r := st.Request
				spec.WorkerType, spec.TaskID, spec.Priority, spec.Master, spec.Repo = r.WorkerType, r.TaskID, r.Priority, r.Master, r.Repo
			}
		}
		if a := ev.GetWorkflowExecutionFailedEventAttributes(); a != nil {
			reason = strings.ReplaceAll(innermostMessage(a.GetFailure()), "\n", "; ")
			at := ev.GetEventTime().AsTime().UTC()
			spec.CompletedAt = &at
		}
	}
	if reason == "" {
		return spec, fmt.Errorf("lifecycle of %s has no status and no failure: it has not begun yet", workerID)
	}
	spec.Status = workflows.StatusFailed
	spec.Cleanup = &workflows.CleanupInfo{Reason: reason, Automated: true}
	spec.Transitions = []workflows.Transition{{Status: workflows.StatusFailed, At: *spec.CompletedAt, Reason: reason}}
	return spec, nil
}

// innermostMessage is the message of the failure's root cause, what the
// workflow said ("invalid spawn request: ...").
func innermostMessage(f *failurepb.Failure) string {
	for f.GetCause() != nil {
		f = f.GetCause()
	}
	return f.GetMessage()
}

// Heartbeat sends a heartbeat to a live worker's lifecycle. Sent from the
// worker's own process (its environment's WORKER_ID is workerID), a
// heartbeat without a Process takes the process's name from the
// environment (workflows.ProcessEnv): should it arrive after a restart, it
// is not counted for the next process; and it goes to the host's socket
// when the host gave one (HeartbeatVia).
func (f *Client) Heartbeat(ctx context.Context, workerID string, hb workflows.Heartbeat) error {
	_, err := f.HeartbeatVia(ctx, workerID, hb)
	return err
}

// Shutdown stops a worker gracefully and returns its spec once it is
// shutting down.
func (f *Client) Shutdown(ctx context.Context, workerID string, req workflows.ShutdownRequest) (workflows.WorkerSpec, error) {
	if err := req.Validate(); err != nil {
		return workflows.WorkerSpec{}, invalid("", err)
	}
	return f.stop(ctx, workerID, workflows.UpdateShutdown, req)
}

// Kill stops a worker at once.
func (f *Client) Kill(ctx context.Context, workerID string, req workflows.KillRequest) (workflows.WorkerSpec, error) {
	if err := req.Validate(); err != nil {
		return workflows.WorkerSpec{}, invalid("", err)
	}
	return f.stop(ctx, workerID, workflows.UpdateKill, req)
}

func (f *Client) stop(ctx context.Context, workerID, update string, req any) (workflows.WorkerSpec, error) {
	var spec workflows.WorkerSpec
	if err := CheckID(workerID); err != nil {
		return spec, err
	}
	h, err := f.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.WorkflowID(workerID),
		UpdateName:   update,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &spec)
	}
	if err != nil {
		return spec, f.explain(ctx, workerID, err)
	}
	return spec, nil
}

// Wait blocks until the worker's lifecycle has ended and returns its final
// spec.
func (f *Client) Wait(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	var spec workflows.WorkerSpec
	if err := CheckID(workerID); err != nil {
		return spec, err
	}
	if err := f.temporal.GetWorkflow(ctx, workflows.WorkflowID(workerID), "").Get(ctx, &spec); err != nil {
		return spec, f.explain(ctx, workerID, err)
	}
	return spec, nil
}

// explain turns Temporal's errors into what the operator asked about.
func (f *Client) explain(ctx context.Context, workerID string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) || strings.Contains(err.Error(), "workflow execution already completed") {
		desc, derr := f.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(workerID), "")
		if derr != nil {
			return fmt.Errorf("%w: no worker with id %s", ErrUnknownWorker, workerID)
		}
		status := desc.GetWorkflowExecutionInfo().GetStatus().String()
		if resp, qerr := f.temporal.QueryWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.QueryStatus); qerr == nil {
			var spec workflows.WorkerSpec
			if resp.Get(&spec) == nil {
				status = string(spec.Status)
			}
		}
		return fmt.Errorf("%w: %s (status %s)", ErrEnded, workerID, status)
	}
	if msg := applicationMessage(err); msg != "" {
		if strings.Contains(msg, "has already ended") {
			return fmt.Errorf("%w: %s", ErrEnded, msg)
		}
		return errors.New(msg)
	}
	return err
}

// CheckID refuses a worker id that is not one: callers check before they
// connect, so that bad input never waits on the network.
func CheckID(workerID string) error {
	if !workflows.WorkerIDPattern.MatchString(workerID) || len(workerID) > workflows.MaxIDLength {
		return invalidField("worker_id", "worker id %s must match %s", workflows.Quote(workerID), workflows.WorkerIDPattern)
	}
	return nil
}

// NewWorkerID makes an id in the old system's shape,
// worker-<short type>-<suffix>, unique across masters by time and chance.
func NewWorkerID(typeName string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := strconv.FormatInt(time.Now().Unix(), 36)
	for _, c := range b {
		suffix += string("0123456789abcdefghijklmnopqrstuvwxyz"[int(c)%36])
	}
	return "worker-" + workertypes.ShortName(typeName) + "-" + suffix
}
