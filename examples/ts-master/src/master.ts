// A master in TypeScript: it drives one worker's lifecycle through
// Temporal's official client, with no code of this project. Every name and
// payload below is the wire contract of docs/API.md (from workflows/api.go
// and workflows/request.go).
//
// It spawns a worker by starting its lifecycle workflow, waits until the
// worker runs, sends heartbeats as the worker would, reads the status, shuts
// the worker down and waits for the lifecycle's result, the final spec. Each
// step prints one JSON line on stdout ({"step": ..., ...}); progress and
// errors go to stderr. Any failure exits with status 1 and a message saying
// what failed.

import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowHandle,
  WorkflowHandleWithFirstExecutionRunId,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
} from '@temporalio/client';

// Names of the contract (workflows/api.go).
const WORKFLOW_TYPE = 'WorkerLifecycle';
const TASK_QUEUE = 'worker-lifecycle';
const workflowId = (workerId: string) => `worker-lifecycle/${workerId}`;
const SIGNAL_HEARTBEAT = 'heartbeat';
const UPDATE_SHUTDOWN = 'shutdown';
const QUERY_STATUS = 'status';

// SpawnRequest (workflows/request.go); durations would be integers of
// nanoseconds, and the ones left out take the defaults. limits is required
// by docs/schemas/SpawnRequest.schema.json even when empty: {} takes every
// default.
interface SpawnRequest {
  worker_id: string;
  worker_type: string;
  task_id?: string;
  priority: string;
  master: string;
  budget: number;
  limits: Record<string, number>;
}

// Heartbeat (workflows/api.go).
interface Heartbeat {
  tokens_used: number;
  status?: 'busy' | 'idle';
  message?: string;
}

// The parts of WorkerSpec (workflows/api.go) this master reads.
interface WorkerSpec {
  worker_id: string;
  status: string;
  pid?: number;
  token_budget: { allocated: number; used: number };
  heartbeat: { count: number; message?: string };
  cleanup?: { reason: string; refunded: number; process?: string };
  [field: string]: unknown;
}

function setting(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    throw new Error(`${name} is required (set it in the environment)`);
  }
  return value;
}

function integer(name: string, fallback: string): number {
  const text = setting(name, fallback);
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`${name}=${text} is not a non-negative integer`);
  }
  return n;
}

function print(step: string, fields: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// waitFor polls the status query until done(spec) says so, or fails after
// timeoutMs with the last status seen.
async function waitFor(
  handle: WorkflowHandle,
  what: string,
  timeoutMs: number,
  done: (spec: WorkerSpec) => boolean,
): Promise<WorkerSpec> {
  const deadline = Date.now() + timeoutMs;
  let last: WorkerSpec | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await handle.query<WorkerSpec>(QUERY_STATUS);
      if (done(last)) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const seen = last ? `status ${last.status}` : `no status (${String(lastError)})`;
      throw new Error(`${what}: gave up after ${timeoutMs / 1000}s with ${seen}`);
    }
    await sleep(200);
  }
}

async function main(): Promise<void> {
  // argv: [worker_id [worker_type [task_id [master]]]], else the environment.
  const [argID, argType, argTask, argMaster] = process.argv.slice(2);
  const address = setting('TEMPORAL_ADDRESS', 'localhost:7233');
  const namespace = setting('TEMPORAL_NAMESPACE', 'default');
  const request: SpawnRequest = {
    worker_id: argID ?? setting('WORKER_ID', `worker-ts-${Date.now().toString(36)}`),
    worker_type: argType ?? setting('WORKER_TYPE', 'scan-worker'),
    task_id: argTask ?? process.env.TASK_ID ?? 'task-ts-master',
    priority: setting('PRIORITY', 'medium'),
    master: argMaster ?? setting('MASTER', 'ts-master'),
    budget: integer('BUDGET', '1000'),
    limits: {},
  };
  if (request.task_id === '') delete request.task_id;
  const heartbeats = integer('HEARTBEATS', '3');
  const startWaitMs = integer('START_WAIT_SECONDS', '30') * 1000;

  const connection = await Connection.connect({ address }).catch((err) => {
    throw new Error(`connecting to Temporal at ${address}: ${err.message ?? err}`);
  });
  try {
    const client = new Client({ connection, namespace });
    const id = workflowId(request.worker_id);

    // Spawn: start the lifecycle with the search attributes the Go client
    // sets (workflows.SearchAttributes of a pending worker, all Keyword). A
    // live worker of this id refuses the start; an ended one may be reused.
    const keyword = (name: string, value: string) => ({ key: { name, type: 'KEYWORD' as const }, value });
    const attributes = [
      keyword('WorkerStatus', 'pending'),
      keyword('WorkerType', request.worker_type),
      keyword('Master', request.master),
      keyword('Priority', request.priority),
    ];
    if (request.task_id) attributes.push(keyword('TaskId', request.task_id));
    let handle: WorkflowHandleWithFirstExecutionRunId;
    try {
      handle = await client.workflow.start(WORKFLOW_TYPE, {
        taskQueue: TASK_QUEUE,
        workflowId: id,
        args: [{ request }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        typedSearchAttributes: attributes,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new Error(`${request.worker_id} is already live; spawn refused`);
      }
      throw new Error(`starting the lifecycle of ${request.worker_id}: ${(err as Error).message}`);
    }
    print('started', { workflow_id: id, run_id: handle.firstExecutionRunId, request });

    // Wait until the worker has left pending: running or idle, or an end
    // that says why it could not start.
    const started = await waitFor(handle, `waiting for ${request.worker_id} to start`, startWaitMs,
      (spec) => spec.status !== 'pending');
    if (started.status !== 'running' && started.status !== 'idle') {
      throw new Error(`${request.worker_id} did not start: status ${started.status}: ${started.cleanup?.reason ?? 'unknown reason'}`);
    }
    print('running', { spec: started });

    // Heartbeats, as the worker process would send them.
    let tokens = 0;
    for (let n = 1; n <= heartbeats; n++) {
      tokens += 100;
      const beat: Heartbeat = { tokens_used: tokens, status: 'busy', message: `ts-master heartbeat ${n}` };
      await handle.signal(SIGNAL_HEARTBEAT, beat);
      print('heartbeat', { n, heartbeat: beat });
    }

    // Status: signals are asynchronous, so wait until all were counted.
    const wanted = started.heartbeat.count + heartbeats;
    const status = await waitFor(handle, `waiting for ${heartbeats} heartbeats to be counted`, 10_000,
      (spec) => spec.heartbeat.count >= wanted);
    print('status', { spec: status });

    // Shutdown: the update returns once the lifecycle has taken the stop
    // (status shutting_down); the workflow's result is the final spec, after
    // the process was stopped and the budget refunded.
    const stopping = await handle
      .executeUpdate<WorkerSpec, [{ reason: string }]>(UPDATE_SHUTDOWN, { args: [{ reason: 'ts-master is done' }] })
      .catch((err) => {
        throw new Error(`shutting down ${request.worker_id}: ${err.message ?? err}`);
      });
    print('shutdown', { spec: stopping });
    const final = await handle.result().catch((err) => {
      throw new Error(`waiting for ${request.worker_id} to end: ${err.message ?? err}`);
    }) as WorkerSpec;
    print('final', { spec: final });
    if (final.status !== 'completed') {
      throw new Error(`${request.worker_id} ended ${final.status}, not completed: ${final.cleanup?.reason ?? 'unknown reason'}`);
    }
    process.stderr.write(`ts-master: ${request.worker_id} completed; refunded ${final.cleanup?.refunded ?? 0} tokens\n`);
  } finally {
    await connection.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ts-master: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
