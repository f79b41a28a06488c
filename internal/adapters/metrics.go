package adapters

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/metrics"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func gauge(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	hostProcessesDesc = gauge(metrics.HostProcesses, "Live worker processes this worker program started on its host.", metrics.LabelHost)
	hostCPUDesc       = gauge(metrics.HostCPU, "CPU of the live worker processes' trees on the host, as their watches last measured it (100 = one core).", metrics.LabelHost)
	hostRSSDesc       = gauge(metrics.HostRSS, "Resident memory of the live worker processes' trees on the host, as their watches last measured it.", metrics.LabelHost)
	hostBeatAgeDesc   = gauge(metrics.HostHeartbeatAgeMax, "Age of the oldest latest heartbeat the host holds for a live process (heartbeats sent to its socket); absent when it holds none.", metrics.LabelHost)
)

// HostCollector exports what a worker program knows of its own host, read
// at each scrape.
type HostCollector struct {
	Host  string
	Procs *activities.ProcessTable
	Beats *activities.HeartbeatBoard
}

func (c *HostCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hostProcessesDesc
	ch <- hostCPUDesc
	ch <- hostRSSDesc
	ch <- hostBeatAgeDesc
}

func (c *HostCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.Procs.Usage()
	ch <- prometheus.MustNewConstMetric(hostProcessesDesc, prometheus.GaugeValue, float64(u.Processes), c.Host)
	ch <- prometheus.MustNewConstMetric(hostCPUDesc, prometheus.GaugeValue, u.CPUPercent, c.Host)
	ch <- prometheus.MustNewConstMetric(hostRSSDesc, prometheus.GaugeValue, float64(u.RSSBytes), c.Host)
	if age, ok := c.Beats.OldestHeld(time.Now()); ok {
		ch <- prometheus.MustNewConstMetric(hostBeatAgeDesc, prometheus.GaugeValue, age.Seconds(), c.Host)
	}
}

var (
	lifecyclesDesc   = gauge(metrics.Lifecycles, "Open lifecycles by state and worker type (from visibility).", metrics.LabelState, metrics.LabelType)
	budgetTotalDesc  = gauge(metrics.BudgetTotal, "The ledger's total (pool root), or a pool's quota (0: none).", metrics.LabelPool)
	budgetHeldDesc   = gauge(metrics.BudgetHeld, "Tokens held by live workers, in the root and by pool.", metrics.LabelPool)
	budgetAvailDesc  = gauge(metrics.BudgetAvailable, "The root's total less what is held; a pool with a quota: its quota less what it holds (borrowing aside).", metrics.LabelPool)
	budgetQueuedDesc = gauge(metrics.BudgetQueued, "Tokens that waiting reservations ask for, in the root and by pool.", metrics.LabelPool)
	windowSpentDesc  = gauge(metrics.BudgetWindowSpent, "Tokens spent in the open spend window, where one is set.", metrics.LabelPool)
	windowLimitDesc  = gauge(metrics.BudgetWindowLimit, "The spend window's limit, where one is set.", metrics.LabelPool)
	budgetAlertDesc  = gauge(metrics.BudgetAlert, "1 while the root's or a pool's alert threshold is crossed, else 0.", metrics.LabelPool)
	breakerOpenDesc  = gauge(metrics.BreakerOpen, "1 while the circuit breaker of a worker type stops its restarts, else 0 (every type with a crash recorded).", metrics.LabelType)
	pollersDesc      = gauge(metrics.QueuePollers, "Worker programs that polled the shared queue (queue=shared) or a host's queue (queue=<host>) in the last 2 minutes; a host seen since this program started stays listed, at 0 once lost.", metrics.LabelQueue)
	readSecondsDesc  = gauge(metrics.FleetReadDuration, "How long the last read of the fleet gauges took.")
	readErrorsDesc   = prometheus.NewDesc(metrics.FleetReadErrors+"_total", "Reads of the fleet gauges that failed, by what was read.", []string{metrics.LabelWhat}, nil)
)

// FleetCollector exports the fleet-wide gauges: one worker program per
// fleet runs it (--metrics-fleet), so that a value is not exported once
// per host. A scrape reads the server at most once per MinInterval; a read
// that fails keeps the previous values of what it could not read and
// counts the error.
type FleetCollector struct {
	Fleet       *fleet.Client
	Log         *slog.Logger
	MinInterval time.Duration
	Timeout     time.Duration

	mu     sync.Mutex
	readAt time.Time
	took   time.Duration
	parts  map[string][]prometheus.Metric
	errors map[string]float64
	// hostSeen is when each host's queue last had a poller.
	hostSeen map[string]time.Time
}

// hostForgetAfter is how long a host whose queue lost its pollers is still
// exported, at 0 (the WorkerHostNotPolling alert): a host removed on
// purpose stops alerting after it.
const hostForgetAfter = time.Hour

func (c *FleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lifecyclesDesc, budgetTotalDesc, budgetHeldDesc, budgetAvailDesc, budgetQueuedDesc,
		windowSpentDesc, windowLimitDesc, budgetAlertDesc, breakerOpenDesc, pollersDesc, readSecondsDesc, readErrorsDesc} {
		ch <- d
	}
}

func (c *FleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts == nil {
		c.parts, c.errors, c.hostSeen = map[string][]prometheus.Metric{}, map[string]float64{}, map[string]time.Time{}
	}
	if time.Since(c.readAt) >= c.MinInterval {
		c.read()
	}
	for _, what := range []string{"lifecycles", "budget", "breakers", "pollers"} {
		for _, m := range c.parts[what] {
			ch <- m
		}
		ch <- prometheus.MustNewConstMetric(readErrorsDesc, prometheus.CounterValue, c.errors[what], what)
	}
	ch <- prometheus.MustNewConstMetric(readSecondsDesc, prometheus.GaugeValue, c.took.Seconds())
}

// read refreshes every part it can.
func (c *FleetCollector) read() {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	fail := func(what string, err error) {
		c.errors[what]++
		c.Log.Warn("Reading a fleet gauge failed", "what", what, "error", err)
	}
	if counts, err := c.Fleet.OpenByState(ctx); err != nil {
		fail("lifecycles", err)
	} else {
		var ms []prometheus.Metric
		for _, sc := range counts {
			ms = append(ms, prometheus.MustNewConstMetric(lifecyclesDesc, prometheus.GaugeValue, float64(sc.Count), string(sc.State), sc.WorkerType))
		}
		c.parts["lifecycles"] = ms
	}
	if v, ok, err := c.Fleet.Budget().View(ctx); err != nil {
		fail("budget", err)
	} else if ok {
		c.parts["budget"] = budgetMetrics(v)
	} else {
		c.parts["budget"] = nil // no ledger (none yet, or terminated)
	}
	if open, err := c.Fleet.Breakers(ctx, time.Now()); err != nil && len(open) == 0 {
		fail("breakers", err)
	} else {
		if err != nil {
			fail("breakers", err) // some read: those are shown
		}
		var ms []prometheus.Metric
		for t, isOpen := range open {
			v := 0.0
			if isOpen {
				v = 1
			}
			ms = append(ms, prometheus.MustNewConstMetric(breakerOpenDesc, prometheus.GaugeValue, v, t))
		}
		c.parts["breakers"] = ms
	}
	if shared, hosts, err := c.Fleet.Pollers(ctx); err != nil {
		fail("pollers", err)
	} else {
		now := time.Now()
		for h, n := range hosts {
			if n > 0 {
				c.hostSeen[h] = now
			}
		}
		ms := []prometheus.Metric{prometheus.MustNewConstMetric(pollersDesc, prometheus.GaugeValue, float64(shared), "shared")}
		for _, h := range slices.Sorted(maps.Keys(c.hostSeen)) {
			if now.Sub(c.hostSeen[h]) > hostForgetAfter {
				delete(c.hostSeen, h) // removed on purpose, or long known lost
				continue
			}
			ms = append(ms, prometheus.MustNewConstMetric(pollersDesc, prometheus.GaugeValue, float64(hosts[h]), h))
		}
		c.parts["pollers"] = ms
	}
	c.readAt, c.took = time.Now(), time.Since(start)
}

// budgetMetrics turns the ledger's view into the budget gauges: the root
// as pool "root", then each pool.
func budgetMetrics(v workflows.BudgetView) []prometheus.Metric {
	g := func(d *prometheus.Desc, value float64, pool string) prometheus.Metric {
		return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, value, pool)
	}
	flag := func(a *workflows.AlertView) float64 {
		if a != nil {
			return 1
		}
		return 0
	}
	root := workflows.PoolRoot
	ms := []prometheus.Metric{
		g(budgetTotalDesc, float64(v.Total), root),
		g(budgetHeldDesc, float64(v.Used), root),
		g(budgetAvailDesc, float64(v.Available), root),
		g(budgetQueuedDesc, float64(v.Queued), root),
		g(budgetAlertDesc, flag(v.Alert), root),
	}
	if v.Window != nil {
		ms = append(ms, g(windowSpentDesc, float64(v.Window.Spent), root), g(windowLimitDesc, float64(v.Window.Limit), root))
	}
	for _, p := range v.Pools {
		if p.Settings.Quota > 0 {
			ms = append(ms, g(budgetAvailDesc, float64(max(p.Settings.Quota-p.Held, 0)), p.Name))
		}
		ms = append(ms,
			g(budgetTotalDesc, float64(p.Settings.Quota), p.Name),
			g(budgetHeldDesc, float64(p.Held), p.Name),
			g(budgetQueuedDesc, float64(p.Queued), p.Name),
			g(budgetAlertDesc, flag(p.Alert), p.Name))
		if p.Window != nil {
			ms = append(ms, g(windowSpentDesc, float64(p.Window.Spent), p.Name), g(windowLimitDesc, float64(p.Window.Limit), p.Name))
		}
	}
	return ms
}
