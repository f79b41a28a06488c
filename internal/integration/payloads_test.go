package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/commit-relay/worker-lifecycle/internal/schemacheck"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// The JSON Schemas of docs/schemas are generated from the Go types, so they
// could agree with the Go types and still not with what goes over the wire
// (a field the encoder adds, a client in another language). These tests
// take the payloads from real runs, as the server stored them, validate
// each against its schema, and with RECORD_PAYLOADS=1 write them to
// testdata/payloads, where internal/schemacheck's unit test validates them
// on every run without a server.

// wirePayload is one payload as it went over the wire.
type wirePayload struct {
	schema string // the file docs/schemas/<schema>.schema.json
	name   string // the case, unique within the lifecycle
	raw    []byte
	// input: sent by the client (a master, an operator, a worker), as
	// opposed to a result the workflow returned.
	input bool
}

// lifecyclePayloads reads the payloads of a lifecycle's history: the start
// input and the spawn request in it, the heartbeat signals, the requests
// and results of the shutdown and kill updates, and the lifecycle's result.
func lifecyclePayloads(t *testing.T, workerID string) []wirePayload {
	t.Helper()
	rh := fetchHistory(t, workflows.WorkflowID(workerID), "")
	var out []wirePayload
	updates := map[string]string{} // update ID -> update name
	heartbeats := 0
	for _, ev := range rh.events {
		switch {
		case ev.GetWorkflowExecutionStartedEventAttributes() != nil:
			raw := onePayload(t, "the start input", ev.GetWorkflowExecutionStartedEventAttributes().GetInput())
			var st struct {
				Request json.RawMessage `json:"request"`
			}
			require.NoError(t, json.Unmarshal(raw, &st), "the start input: %s", raw)
			require.NotEmpty(t, st.Request, "the start input has no request: %s", raw)
			out = append(out,
				wirePayload{"LifecycleState", "start", raw, true},
				wirePayload{"SpawnRequest", "start", st.Request, true})
		case ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName() == workflows.SignalBudgetAnswer:
			raw := onePayload(t, "the ledger's answer", ev.GetWorkflowExecutionSignaledEventAttributes().GetInput())
			out = append(out, wirePayload{"BudgetAnswer", "budget-answer", raw, false})
		case ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName() == workflows.SignalHeartbeat:
			heartbeats++
			raw := onePayload(t, "a heartbeat signal", ev.GetWorkflowExecutionSignaledEventAttributes().GetInput())
			out = append(out, wirePayload{"Heartbeat", "heartbeat-" + strconv.Itoa(heartbeats), raw, true})
		case ev.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil:
			req := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest()
			name := req.GetInput().GetName()
			updates[req.GetMeta().GetUpdateId()] = name
			schema := map[string]string{workflows.UpdateShutdown: "ShutdownRequest", workflows.UpdateKill: "KillRequest"}[name]
			require.NotEmpty(t, schema, "update %q of %s has no schema", name, workerID)
			raw := onePayload(t, "the "+name+" request", req.GetInput().GetArgs())
			out = append(out, wirePayload{schema, name + "-request", raw, true})
		case ev.GetWorkflowExecutionUpdateCompletedEventAttributes() != nil:
			a := ev.GetWorkflowExecutionUpdateCompletedEventAttributes()
			name := updates[a.GetMeta().GetUpdateId()]
			require.NotEmpty(t, name, "update %s completed without being accepted", a.GetMeta().GetUpdateId())
			raw := onePayload(t, "the "+name+" result", a.GetOutcome().GetSuccess())
			out = append(out, wirePayload{"WorkerSpec", name + "-result", raw, false})
		case ev.GetWorkflowExecutionCompletedEventAttributes() != nil:
			raw := onePayload(t, "the lifecycle's result", ev.GetWorkflowExecutionCompletedEventAttributes().GetResult())
			out = append(out, wirePayload{"WorkerSpec", "result", raw, false})
		}
	}
	return out
}

// askPayloads are the request and the result of the ledger's "ask" update
// for the worker (how a lifecycle reserves since version reserve-ask), from
// the ledger's current run or the runs before it.
func askPayloads(t *testing.T, workerID string) []wirePayload {
	t.Helper()
	runID := ""
	for range 5 {
		rh := fetchHistory(t, workflows.LedgerWorkflowID, runID)
		var out []wirePayload
		asked := ""
		for _, ev := range rh.events {
			if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil && a.GetAcceptedRequest().GetInput().GetName() == workflows.UpdateAsk {
				raw := onePayload(t, "an ask", a.GetAcceptedRequest().GetInput().GetArgs())
				var req workflows.ReserveRequest
				require.NoError(t, json.Unmarshal(raw, &req))
				if req.WorkerID == workerID && asked == "" {
					asked = a.GetAcceptedRequest().GetMeta().GetUpdateId()
					out = append(out, wirePayload{"ReserveRequest", "ask-request", raw, true})
				}
			}
			if c := ev.GetWorkflowExecutionUpdateCompletedEventAttributes(); c != nil && asked != "" && c.GetMeta().GetUpdateId() == asked {
				out = append(out, wirePayload{"BudgetAnswer", "ask-result", onePayload(t, "an ask's answer", c.GetOutcome().GetSuccess()), false})
				return out
			}
		}
		if runID = rh.events[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId(); runID == "" {
			break
		}
	}
	t.Fatalf("no ask update of %s with its answer in the ledger's last runs", workerID)
	return nil
}

// onePayload is the JSON of the single payload ps holds. Anything but one
// json/plain payload is not the wire format docs/API.md describes.
func onePayload(t *testing.T, what string, ps *commonpb.Payloads) []byte {
	t.Helper()
	payloads := ps.GetPayloads()
	require.Len(t, payloads, 1, "%s", what)
	require.Equal(t, "json/plain", string(payloads[0].GetMetadata()["encoding"]), "the encoding of %s", what)
	return payloads[0].GetData()
}

// queryPayload runs a query and returns its result's JSON as the workflow
// encoded it, without decoding it into a Go type that would drop or fill
// fields.
func queryPayload(t *testing.T, workflowID, query string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := h.client.QueryWorkflow(ctx, workflowID, "", query)
	require.NoError(t, err, "query %s of %s", query, workflowID)
	var raw json.RawMessage
	require.NoError(t, v.Get(&raw))
	return raw
}

// checkPayloads validates each payload against its schema and, with
// RECORD_PAYLOADS=1, writes it to testdata/payloads/<schema>/<prefix>-<name>.json.
func checkPayloads(t *testing.T, prefix string, payloads []wirePayload) {
	t.Helper()
	record := os.Getenv("RECORD_PAYLOADS") == "1"
	for _, p := range payloads {
		name := prefix + "-" + p.name
		if err := schemacheck.Validate(h.root, p.schema, p.raw); err != nil {
			t.Errorf("%s (%s) does not validate:\n%v\npayload: %s", name, p.schema, err, p.raw)
			continue
		}
		if !record {
			continue
		}
		var pretty bytes.Buffer
		require.NoError(t, json.Indent(&pretty, p.raw, "", "  "))
		pretty.WriteByte('\n')
		dir := filepath.Join(h.root, schemacheck.PayloadDir, p.schema)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), pretty.Bytes(), 0o644))
	}
}

// TestPayloadsOfARealRunValidate drives two sleepers through the starter,
// one heartbeated and shut down, one killed, and validates every payload of
// their histories and of the status and budget queries against the
// schemas.
func TestPayloadsOfARealRunValidate(t *testing.T) {
	graceful, killed := newID("sleeper"), newID("sleeper")
	var queries []wirePayload
	query := func(name, workflowID, query, schema string) {
		queries = append(queries, wirePayload{schema, name, queryPayload(t, workflowID, query), false})
	}

	// Every optional field the starter can send, so that the schema sees them.
	h.spawnOK(t, graceful, "--type", "sleeper-worker", "--master", "payloads-test",
		"--task-id", "task-payloads-1", "--priority", "high", "--repo", "commit-relay/worker-lifecycle",
		"--budget", "600", "--timeout", "8m", "--zombie-after", "10m", "--idle-after", "15m", "--shutdown-grace", "3s",
		"--wait-for-budget", "--queue-timeout", "5m")
	for i, beat := range [][]string{
		{"--tokens-used", "120", "--status", "busy", "--message", "reading the task", "--health-score", "95"},
		{"--tokens-used", "340", "--status", "busy", "--message", "writing the change"},
		{"--tokens-used", "410", "--status", "idle", "--message", "waiting for review", "--health-score", "80"},
	} {
		h.starterOK(t, append([]string{"heartbeat", graceful}, beat...)...)
		// Signals are asynchronous: wait for each to be counted, so that the
		// status query below shows the last one. (Polled here rather than in
		// require.Eventually, whose goroutine must not fail the test.)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var spec workflows.WorkerSpec
			require.NoError(t, json.Unmarshal(queryPayload(t, workflows.WorkflowID(graceful), workflows.QueryStatus), &spec))
			if spec.Heartbeat.Count == int64(i+1) {
				break
			}
			require.True(t, time.Now().Before(deadline), "heartbeat %d of %s is not counted: %+v", i+1, graceful, spec.Heartbeat)
		}
	}
	query("status-heartbeated", workflows.WorkflowID(graceful), workflows.QueryStatus, "WorkerSpec")
	query("budget-one-allocation", workflows.LedgerWorkflowID, workflows.QueryBudget, "BudgetView")
	h.starterOK(t, "shutdown", graceful, "--grace", "2s", "--reason", "payloads test is done")
	query("status-completed", workflows.WorkflowID(graceful), workflows.QueryStatus, "WorkerSpec")

	// The fewest flags: the type's defaults, no task (the worker starts idle).
	h.spawnOK(t, killed, "--type", "sleeper-worker", "--master", "payloads-test")
	query("status-idle", workflows.WorkflowID(killed), workflows.QueryStatus, "WorkerSpec")
	h.starterOK(t, "kill", killed, "--reason", "payloads test kills it")
	query("status-killed", workflows.WorkflowID(killed), workflows.QueryStatus, "WorkerSpec")
	query("budget-released", workflows.LedgerWorkflowID, workflows.QueryBudget, "BudgetView")

	gracefulPayloads := lifecyclePayloads(t, graceful)
	killedPayloads := lifecyclePayloads(t, killed)
	// What each history must have held, so that a payload the extraction
	// missed cannot pass unnoticed.
	// The ledger's answer came in the ask's result, not as a signal.
	require.Equal(t, []string{"start", "start", "heartbeat-1", "heartbeat-2", "heartbeat-3", "shutdown-request", "shutdown-result", "result"},
		payloadNames(gracefulPayloads))
	require.Equal(t, []string{"start", "start", "kill-request", "kill-result", "result"}, payloadNames(killedPayloads))
	gracefulPayloads = append(gracefulPayloads, askPayloads(t, graceful)...)
	killedPayloads = append(killedPayloads, askPayloads(t, killed)...)

	checkPayloads(t, "starter-graceful", gracefulPayloads)
	checkPayloads(t, "starter-killed", killedPayloads)
	checkPayloads(t, "query", queries)
}

func payloadNames(ps []wirePayload) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	return names
}
