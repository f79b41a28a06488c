package workertypes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// What the lifecycle does when a worker's process ends, by the type's exit
// rules (Kubernetes' podFailurePolicy, on a worker's end).
const (
	// ActionComplete ends the lifecycle completed: the default of exit 0.
	ActionComplete = "complete"
	// ActionRestart is a crash: restarted while max_restarts and the
	// type's circuit breaker allow, each restart counted. The default of
	// every other end but a lost one.
	ActionRestart = "restart"
	// ActionFail ends the lifecycle failed, then cleaned_up, without a
	// restart and without telling the circuit breaker: the agent said the
	// task cannot be done, and running it again would not help.
	ActionFail = "fail"
	// ActionIgnore restarts without counting it against max_restarts or
	// the breaker (Kubernetes' Ignore): a transient end such as a rate
	// limit. The back-off and the 3× token cap still apply.
	ActionIgnore = "ignore"
)

// Causes an exit rule can name instead of exit codes.
const (
	// CauseOOM is an out-of-memory kill of the worker's cgroup.
	CauseOOM = "oom"
	// CauseLost is an end nobody saw: the monitor was killed too, or the
	// host rebooted. Its default is fail: without an exit status the
	// agent may well have finished its task, and running it again could
	// do the work twice.
	CauseLost = "lost"
	// CauseFenced is a stop by the worker's own host, cut off from the
	// server for longer than its fence bound (self-fencing). Its default
	// is fail: by then the server may count the host lost and refund the
	// lifecycle, and a task cut off mid-way may have done part of its
	// work.
	CauseFenced = "fenced"
)

// causes are the causes a rule can name, in the order ExitAction looks at
// them.
var causes = []string{CauseFenced, CauseLost, CauseOOM}

// ExitRule maps some ends of a process to an action. It names either
// exit codes (0..255; 128+N is a death by signal N) or a cause.
type ExitRule struct {
	ExitCodes []int  `json:"exit_codes,omitempty"`
	Cause     string `json:"cause,omitempty"`
	Action    string `json:"action"`
}

var ruleActions = []string{ActionFail, ActionRestart, ActionIgnore}

func (r ExitRule) validate(field string) []fieldError {
	var errs []fieldError
	switch {
	case len(r.ExitCodes) == 0 && r.Cause == "":
		errs = append(errs, fieldError{field, "names neither exit_codes nor a cause"})
	case len(r.ExitCodes) > 0 && r.Cause != "":
		errs = append(errs, fieldError{field, "names both exit_codes and a cause; one rule takes one"})
	case r.Cause != "" && !slices.Contains(causes, r.Cause):
		errs = append(errs, fieldError{field + ".cause", fmt.Sprintf("%q must be one of %s", r.Cause, strings.Join(causes, ", "))})
	}
	for i, c := range r.ExitCodes {
		if c < 0 || c > 255 {
			errs = append(errs, fieldError{fmt.Sprintf("%s.exit_codes[%d]", field, i), fmt.Sprintf("%d is not in 0..255", c)})
		}
	}
	if !slices.Contains(ruleActions, r.Action) {
		errs = append(errs, fieldError{field + ".action", fmt.Sprintf("%q must be one of %s", r.Action, strings.Join(ruleActions, ", "))})
	}
	return errs
}

// End is how a process ended, as far as the exit rules look at it.
type End struct {
	ExitCode int
	OOM      bool
	Lost     bool
	// Fenced is a stop by the host itself while cut off from the server;
	// its exit code is that of the stop (a TERM or a KILL), not the
	// agent's doing.
	Fenced bool
}

// ExitAction decides what a lifecycle does about an end: the first rule
// that matches it, else the default (exit 0 completes, a lost end fails,
// anything else restarts). A cause rule is looked at before the exit
// codes: an out-of-memory kill is also a SIGKILL (137), and the rule for
// oom is the one meant. It returns the action and the rule that chose it
// ("" for the default), for the lifecycle's reason.
func (t Type) ExitAction(e End) (action, rule string) {
	if cause := e.cause(); cause != "" {
		for i, r := range t.ExitRules {
			if r.Cause == cause {
				return r.Action, fmt.Sprintf("exit_rules[%d] (%s)", i, cause)
			}
		}
		if cause != CauseOOM {
			return ActionFail, ""
		}
	}
	for i, r := range t.ExitRules {
		if slices.Contains(r.ExitCodes, e.ExitCode) {
			return r.Action, "exit_rules[" + strconv.Itoa(i) + "] (exit code " + strconv.Itoa(e.ExitCode) + ")"
		}
	}
	if e.ExitCode == 0 {
		return ActionComplete, ""
	}
	return ActionRestart, ""
}

// cause is the cause an end is judged by, if any: a fenced end is killed
// by a signal and may have been lost from sight, but it is the fence that
// ended it.
func (e End) cause() string {
	switch {
	case e.Fenced:
		return CauseFenced
	case e.Lost:
		return CauseLost
	case e.OOM:
		return CauseOOM
	}
	return ""
}
