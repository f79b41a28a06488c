package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// rawJSON is a payload sent as is, bypassing every check of our own code.
func rawJSON(data string) converter.RawValue { return rawPayload("json/plain", data) }

func rawPayload(encoding, data string) converter.RawValue {
	return converter.NewRawValue(&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(encoding)}, Data: []byte(data)})
}

// update sends an update with one raw argument and returns its error.
func update(workflowID, name string, arg any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := client.UpdateWorkflowOptions{WorkflowID: workflowID, UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted}
	if arg != nil {
		opts.Args = []any{arg}
	}
	handle, err := h.client.UpdateWorkflow(ctx, opts)
	if err != nil {
		return err
	}
	return handle.Get(ctx, nil)
}

// TestHostilePayloadsChangeNothing sends, straight through Temporal's API,
// what no well-behaved sender would: every signal, update and query of the
// lifecycle and the ledger with malformed JSON, wrong types, negative and
// huge numbers, oversized payloads, unknown names and ids, and operations in
// the wrong state. Updates and queries are refused with an error naming the
// problem; signals, which cannot be refused, are counted as rejected and
// ignored; nothing changes, and the lifecycle stays responsive: its zombie
// deadline still fires after a bad heartbeat is the last thing it got.
func TestHostilePayloadsChangeNothing(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	live := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-hostile", "--master", "development-master",
		"--worker-id", live, "--zombie-after", "15s")
	wid := workflows.WorkflowID(live)
	withLive := h.budget(t)
	ended := newID("finisher")
	h.starterOK(t, "spawn", "--type", "finisher-worker", "--task-id", "task-ended", "--master", "development-master", "--worker-id", ended)
	h.waitStatus(t, ended, workflows.StatusCompleted, 30*time.Second)
	ghost := workflows.WorkflowID(newID("ghost"))
	oversized := `{"message": "` + strings.Repeat("x", 70<<10) + `"}`

	// Signals: accepted by the server, rejected by the lifecycle.
	signals := []struct {
		name    string
		payload converter.RawValue
	}{
		{workflows.SignalHeartbeat, rawJSON(`{"tokens_used": `)},
		{workflows.SignalHeartbeat, rawJSON(`{"tokens_used": "lots"}`)},
		{workflows.SignalHeartbeat, rawJSON(`{"tokens_used": -5}`)},
		{workflows.SignalHeartbeat, rawJSON(`{"tokens_used": 1e30}`)},
		{workflows.SignalHeartbeat, rawJSON(`{"health_score": 1000}`)},
		{workflows.SignalHeartbeat, rawJSON(`{"status": "asleep"}`)},
		{workflows.SignalHeartbeat, rawJSON(`[1, 2, 3]`)},
		{workflows.SignalHeartbeat, rawJSON(`null`)},
		{workflows.SignalHeartbeat, rawJSON(oversized)},
		{workflows.SignalHeartbeat, rawPayload("binary/plain", "\x00\xff")},
		{workflows.SignalSample, rawJSON(`{"cpu_percent": "hot"}`)},
		{workflows.SignalSample, rawJSON(`{"rss_bytes": -1}`)},
		{workflows.SignalOutputHeartbeat, rawJSON(`{`)},
	}
	for _, s := range signals {
		require.NoError(t, h.client.SignalWorkflow(ctx, wid, "", s.name, s.payload), "the server takes any signal")
	}
	require.NoError(t, h.client.SignalWorkflow(ctx, wid, "", "reboot", rawJSON(`{}`)), "an unknown signal name is taken and ignored")
	require.Eventually(t, func() bool {
		return h.status(t, live).Heartbeat.Rejected == int64(len(signals))
	}, 20*time.Second, 100*time.Millisecond, "every bad signal is counted as rejected")
	spec := h.status(t, live)
	assert.Equal(t, workflows.StatusRunning, spec.Status)
	assert.Zero(t, spec.Heartbeat.Count, "no bad signal counts as a heartbeat")
	assert.Zero(t, spec.TokenBudget.Used)
	assert.Regexp(t, "^(heartbeat|resource-sample|output-heartbeat): ", spec.Heartbeat.LastRejected, "says which signal and why")

	// Updates and queries: each refused, naming the problem.
	for _, tc := range []struct {
		name     string
		workflow string
		update   string
		arg      any
		want     string
	}{
		{"shutdown malformed", wid, workflows.UpdateShutdown, rawJSON(`{"grace": `), "unexpected end of JSON input"},
		{"shutdown wrong type", wid, workflows.UpdateShutdown, rawJSON(`{"grace": "soon"}`), "cannot unmarshal string"},
		{"shutdown negative grace", wid, workflows.UpdateShutdown, rawJSON(`{"grace": -1}`), "grace -1ns is not in 0..1h"},
		{"shutdown huge grace", wid, workflows.UpdateShutdown, rawJSON(`{"grace": 1e30}`), "cannot unmarshal number 1e30"},
		{"shutdown oversized reason", wid, workflows.UpdateShutdown, rawJSON(`{"reason": "` + strings.Repeat("r", 70<<10) + `"}`), "reason is longer than 1024 bytes"},
		{"kill wrong type", wid, workflows.UpdateKill, rawJSON(`{"reason": 5}`), "cannot unmarshal number"},
		{"cleanup while running", wid, workflows.UpdateCleanup, nil, "is running, not a zombie: nothing to clean up"},
		{"unknown update", wid, "reboot", rawJSON(`{}`), "reboot"},
		{"shutdown unknown id", ghost, workflows.UpdateShutdown, rawJSON(`{}`), "not found"},
		{"kill ended", workflows.WorkflowID(ended), workflows.UpdateKill, rawJSON(`{}`), "workflow execution already completed"},
		{"reserve malformed", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"amount": `), "unexpected end of JSON input"},
		{"reserve negative", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"worker_id": "worker-x-1", "lease": "l", "amount": -5}`), "budget -5 is not in 1..200000"},
		{"reserve huge", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"worker_id": "worker-x-1", "lease": "l", "amount": 9223372036854775807}`), "is not in 1..200000"},
		{"reserve missing lease", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"worker_id": "worker-x-1", "amount": 5}`), "invalid reservation"},
		{"reserve path id", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"worker_id": "../../etc", "lease": "l", "amount": 5}`), "invalid reservation"},
		{"reserve for a live worker's id", workflows.LedgerWorkflowID, workflows.UpdateReserve, rawJSON(`{"worker_id": "` + live + `", "lease": "other", "amount": 5}`), "already holds 1000 tokens for another lifecycle"},
		{"release missing fields", workflows.LedgerWorkflowID, workflows.UpdateRelease, rawJSON(`{}`), "worker id and lease are required"},
		{"set_total negative", workflows.LedgerWorkflowID, workflows.UpdateSetTotal, rawJSON(`{"total": -1}`), "total -1 is not in"},
		{"set_total wrong type", workflows.LedgerWorkflowID, workflows.UpdateSetTotal, rawJSON(`{"total": "all"}`), "cannot unmarshal string"},
		{"set_total below used", workflows.LedgerWorkflowID, workflows.UpdateSetTotal, rawJSON(`{"total": 1}`), "below the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := update(tc.workflow, tc.update, tc.arg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := h.client.QueryWorkflow(ctx, wid, "", "secrets")
	require.ErrorContains(t, err, "secrets")
	_, err = h.client.QueryWorkflow(ctx, ghost, "", workflows.QueryStatus)
	require.ErrorContains(t, err, "not found")
	err = h.client.SignalWorkflow(ctx, ghost, "", workflows.SignalHeartbeat, workflows.Heartbeat{})
	require.ErrorContains(t, err, "not found")
	err = h.client.SignalWorkflow(ctx, workflows.WorkflowID(ended), "", workflows.SignalHeartbeat, workflows.Heartbeat{})
	require.ErrorContains(t, err, "workflow execution already completed")

	// Nothing changed: not the ledger, not the live worker, not the ended one.
	require.Equal(t, withLive, h.budget(t))
	spec = h.status(t, live)
	assert.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning}, statuses(spec), "no stop was taken")
	assert.Zero(t, spec.Heartbeat.Count)
	assert.Equal(t, workflows.StatusCompleted, h.status(t, ended).Status)

	// Still responsive: a good heartbeat counts, and a bad one as the last
	// signal does not keep the zombie deadline from firing.
	h.starterOK(t, "heartbeat", live, "--tokens-used", "42")
	require.NoError(t, h.client.SignalWorkflow(ctx, wid, "", workflows.SignalHeartbeat, rawJSON(`{"tokens_used": `)))
	final := h.waitStatus(t, live, workflows.StatusCleanedUp, 60*time.Second)
	assert.Equal(t, int64(1), final.Heartbeat.Count)
	assert.Equal(t, int64(42), final.TokenBudget.Used)
	assert.Equal(t, int64(len(signals)+1), final.Heartbeat.Rejected)
	assert.Contains(t, final.Cleanup.Reason, "no heartbeat for 15s")
	requireGone(t, final.PID)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-rejected-signals", wid)
}
