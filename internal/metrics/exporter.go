package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// Path is where the metrics are served.
const Path = "/metrics"

// timerBuckets are the bounds of every SDK timer's histogram, in seconds:
// the OpenTelemetry default suits milliseconds, and would put every
// latency of this system in its first bucket.
var timerBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Exporter holds one worker program's metrics: a Prometheus registry with
// the program's own process metrics, and the Temporal SDK's metrics
// handler writing into it (the SDK's metrics and this module's counters).
type Exporter struct {
	Registry *prometheus.Registry
	// Handler is given to the Temporal client (connection.Options.Metrics):
	// the SDK records its own metrics through it, and workflow and activity
	// code reach it with workflow.GetMetricsHandler and
	// activity.GetMetricsHandler.
	Handler  client.MetricsHandler
	provider *sdkmetric.MeterProvider
}

// New builds an exporter. Errors of the SDK's instruments are logged, not
// raised: a metric must never fail a workflow task.
func New(log *slog.Logger) (*Exporter, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: timerBuckets}})))
	handler := temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                provider.Meter("worker-lifecycle"),
		UseMonotonicCounters: true,
		OnError:              func(err error) { log.Warn("Recording a metric failed", "error", err) },
	})
	return &Exporter{Registry: reg, Handler: handler, provider: provider}, nil
}

// Listen binds addr for Serve, so that an address that cannot be bound is
// refused when the program starts.
func Listen(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: give host:port (\":9464\" for every address): %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: %w", addr, err)
	}
	return l, nil
}

// Serve answers Path on l until ctx ends.
func (e *Exporter) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{ErrorLog: nil, Registry: e.Registry}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Close flushes nothing (the exporter is pulled) and releases the provider.
func (e *Exporter) Close() error { return e.provider.Shutdown(context.Background()) }
