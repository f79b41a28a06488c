package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// SetupConfig is what a new server needs before the first lifecycle: the
// namespace, the search attributes the lifecycles upsert, and the schedules.
type SetupConfig struct {
	Namespace string
	// CreateNamespace registers Namespace with Retention when it is missing
	// (a dev server or an auto-setup image has "default" already).
	CreateNamespace bool
	// Retention is the namespace's history retention for a namespace this
	// setup creates. It must outlive the archival's retention, or the
	// archival finds the histories it reads already deleted.
	Retention time.Duration
	Schedules ScheduleConfig
}

// ArchivalSlack is how much longer than the archival's retention the
// namespace keeps histories: one day between archival runs.
const ArchivalSlack = 24 * time.Hour

// DefaultNamespaceRetention leaves a day more than ArchivalSlack, so that
// one missed or failed archival run loses nothing.
const DefaultNamespaceRetention = workflows.DefaultRetention + ArchivalSlack + 24*time.Hour

// SetupReport says what the setup changed; an empty report means the server
// was set up already.
type SetupReport struct {
	NamespaceCreated  bool     `json:"namespace_created"`
	AttributesAdded   []string `json:"search_attributes_added"`
	SchedulesCreated  []string `json:"schedules_created"`
	SchedulesUpToDate []string `json:"schedules_updated"`
}

// Validate checks the configuration without a server.
func (c SetupConfig) Validate() error {
	if c.Namespace == "" {
		return fmt.Errorf("%w: the namespace is empty", ErrInvalid)
	}
	if err := c.Schedules.Validate(); err != nil {
		return err
	}
	// The archival runs once a day (by default) and takes what closed longer
	// ago than its retention: a lifecycle is archived up to a day after
	// that, and its history must still be there then.
	if min := c.Schedules.Retention + ArchivalSlack; c.CreateNamespace && c.Retention < min {
		return fmt.Errorf("%w: the namespace retention %s must be at least the archival retention %s plus %s, or the archival finds the histories it reads deleted",
			ErrInvalid, c.Retention, c.Schedules.Retention, ArchivalSlack)
	}
	return nil
}

// Setup brings a server to what this system needs; each step is skipped when
// it is done already, so it is safe to run at every deployment.
func (f *Fleet) Setup(ctx context.Context, cfg SetupConfig) (SetupReport, error) {
	var report SetupReport
	if err := cfg.Validate(); err != nil {
		return report, err
	}
	created, err := f.ensureNamespace(ctx, cfg)
	if err != nil {
		return report, err
	}
	report.NamespaceCreated = created
	if report.AttributesAdded, err = f.ensureSearchAttributes(ctx, cfg.Namespace); err != nil {
		return report, err
	}
	if report.SchedulesCreated, err = f.InstallSchedules(ctx, cfg.Schedules); err != nil {
		return report, err
	}
	for _, id := range []string{workflows.ArchivalScheduleID, workflows.SweepScheduleID} {
		if !slices.Contains(report.SchedulesCreated, id) {
			report.SchedulesUpToDate = append(report.SchedulesUpToDate, id)
		}
	}
	return report, nil
}

func (f *Fleet) ensureNamespace(ctx context.Context, cfg SetupConfig) (bool, error) {
	ns := f.Client.WorkflowService()
	_, err := ns.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		return false, nil
	case !errors.As(err, &notFound):
		return false, fmt.Errorf("describing namespace %s: %w", cfg.Namespace, err)
	case !cfg.CreateNamespace:
		return false, fmt.Errorf("namespace %s does not exist; give --create-namespace to register it", cfg.Namespace)
	}
	_, err = ns.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        cfg.Namespace,
		Description:                      "AI worker lifecycles",
		WorkflowExecutionRetentionPeriod: durationpb.New(cfg.Retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return false, fmt.Errorf("registering namespace %s: %w", cfg.Namespace, err)
	}
	return err == nil, nil
}

func (f *Fleet) ensureSearchAttributes(ctx context.Context, namespace string) ([]string, error) {
	op := f.Client.OperatorService()
	// A namespace registered a moment ago may not be in every frontend's
	// cache yet; the operator service then answers NotFound for a while.
	var have map[string]enumspb.IndexedValueType
	for {
		resp, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err == nil {
			have = resp.GetCustomAttributes()
			break
		}
		if !isNotFound(err) {
			return nil, fmt.Errorf("listing the search attributes of %s: %w", namespace, err)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("namespace %s is not visible to the operator service yet: %w", namespace, err)
		}
	}
	missing := map[string]enumspb.IndexedValueType{}
	var added []string
	for _, name := range workflows.SearchAttributeNames {
		t, ok := have[name]
		switch {
		case !ok:
			missing[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
			added = append(added, name)
		case t != enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			return nil, fmt.Errorf("search attribute %s exists in namespace %s as %s; the lifecycles need it as Keyword (another system uses this name: use another namespace)",
				name, namespace, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing}); err != nil {
		return nil, fmt.Errorf("adding search attributes %v to %s: %w", added, namespace, err)
	}
	return added, nil
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	var nsnf *serviceerror.NamespaceNotFound
	return errors.As(err, &nf) || errors.As(err, &nsnf)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
