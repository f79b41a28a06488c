package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// ArchivalSlack is how much longer than the archival's retention the
// namespace must keep histories: the archival runs once a day, so a
// lifecycle is archived up to a day after its retention has passed.
const ArchivalSlack = 24 * time.Hour

// DefaultNamespaceRetention leaves one more day than ArchivalSlack, so that
// one missed or failed archival run loses nothing.
const DefaultNamespaceRetention = workflows.DefaultRetention + ArchivalSlack + 24*time.Hour

// ErrNoNamespace is returned by Setup for a missing namespace it was not
// asked to create.
var ErrNoNamespace = errors.New("namespace does not exist")

// ErrRetentionTooShort is returned by Setup for an existing namespace whose
// retention would delete histories before the archival reads them, when it
// was not asked to raise it.
var ErrRetentionTooShort = errors.New("namespace retention too short for the archival")

// SetupConfig is what a new server needs before the first lifecycle: the
// namespace, the search attributes the lifecycles upsert, and the schedules.
type SetupConfig struct {
	Namespace string
	// CreateNamespace registers Namespace with Retention when it is missing
	// (a dev server has "default" already).
	CreateNamespace bool
	// UpdateRetention raises an existing namespace's retention to Retention
	// when it is shorter than the archival needs.
	UpdateRetention bool
	// Retention is the history retention of a namespace this setup creates
	// or updates.
	Retention time.Duration
	Schedules ScheduleConfig
}

// SetupReport says what the setup changed; a report with nothing created,
// updated or added means the server was set up already.
type SetupReport struct {
	NamespaceCreated  bool     `json:"namespace_created"`
	RetentionUpdated  bool     `json:"retention_updated"`
	Retention         string   `json:"retention"`
	AttributesAdded   []string `json:"search_attributes_added"`
	SchedulesCreated  []string `json:"schedules_created"`
	SchedulesUpToDate []string `json:"schedules_up_to_date"`
}

// minRetention is the shortest namespace retention the archival allows.
func (c SetupConfig) minRetention() time.Duration {
	return c.Schedules.Retention + ArchivalSlack
}

// Validate checks the configuration without a server.
func (c SetupConfig) Validate() error {
	if c.Namespace == "" {
		return fmt.Errorf("%w: the namespace is empty", ErrInvalid)
	}
	if err := c.Schedules.Validate(); err != nil {
		return err
	}
	if floor := c.minRetention(); (c.CreateNamespace || c.UpdateRetention) && c.Retention < floor {
		return fmt.Errorf("%w: the namespace retention %s must be at least the archival retention %s plus %s, or the archival finds the histories it reads deleted",
			ErrInvalid, c.Retention, c.Schedules.Retention, ArchivalSlack)
	}
	return nil
}

// Setup brings a server to what this system needs; each step is skipped when
// it is done already, so it is safe to run at every deployment. The
// namespace is checked first: a refusal there changes nothing. On an error
// the report says what was done before it.
func (f *Client) Setup(ctx context.Context, cfg SetupConfig) (SetupReport, error) {
	var report SetupReport
	if err := cfg.Validate(); err != nil {
		return report, err
	}
	if err := f.ensureNamespace(ctx, cfg, &report); err != nil {
		return report, err
	}
	var err error
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

func (f *Client) ensureNamespace(ctx context.Context, cfg SetupConfig, report *SetupReport) error {
	ns := f.temporal.WorkflowService()
	desc, err := ns.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		return f.checkRetention(ctx, cfg, desc, report)
	case !errors.As(err, &notFound):
		return fmt.Errorf("describing namespace %s: %w", cfg.Namespace, err)
	case !cfg.CreateNamespace:
		return fmt.Errorf("%w: %s", ErrNoNamespace, cfg.Namespace)
	}
	_, err = ns.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        cfg.Namespace,
		Description:                      "AI worker lifecycles",
		WorkflowExecutionRetentionPeriod: durationpb.New(cfg.Retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("registering namespace %s: %w", cfg.Namespace, err)
	}
	report.NamespaceCreated = err == nil
	report.Retention = cfg.Retention.String()
	return nil
}

// checkRetention refuses, or with UpdateRetention raises, the retention of
// an existing namespace that would delete histories before the archival
// reads them.
func (f *Client) checkRetention(ctx context.Context, cfg SetupConfig, desc *workflowservice.DescribeNamespaceResponse, report *SetupReport) error {
	have := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration()
	report.Retention = have.String()
	if have >= cfg.minRetention() {
		return nil
	}
	if !cfg.UpdateRetention {
		return fmt.Errorf("%w: namespace %s keeps closed histories %s, but the archival (retention %s, daily) reads them up to %s after they close",
			ErrRetentionTooShort, cfg.Namespace, have, cfg.Schedules.Retention, cfg.minRetention())
	}
	_, err := f.temporal.WorkflowService().UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
		Namespace: cfg.Namespace,
		Config:    &namespacepb.NamespaceConfig{WorkflowExecutionRetentionTtl: durationpb.New(cfg.Retention)},
	})
	if err != nil {
		return fmt.Errorf("raising the retention of namespace %s to %s: %w", cfg.Namespace, cfg.Retention, err)
	}
	report.RetentionUpdated = true
	report.Retention = cfg.Retention.String()
	return nil
}

// namespaceVisibleWithin bounds the wait for a namespace registered a moment
// ago to reach the operator service, when the caller set no deadline.
const namespaceVisibleWithin = 30 * time.Second

func (f *Client) ensureSearchAttributes(ctx context.Context, namespace string) ([]string, error) {
	op := f.temporal.OperatorService()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, namespaceVisibleWithin)
		defer cancel()
	}
	// A namespace registered a moment ago may not be in every frontend's
	// cache yet; the operator service then answers NotFound for a while.
	var have map[string]enumspb.IndexedValueType
	for {
		resp, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err == nil {
			have = resp.GetCustomAttributes()
			break
		}
		var notFound *serviceerror.NotFound
		var nsNotFound *serviceerror.NamespaceNotFound
		if !errors.As(err, &notFound) && !errors.As(err, &nsNotFound) {
			return nil, fmt.Errorf("listing the search attributes of %s: %w", namespace, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("namespace %s is not visible to the operator service yet: %w", namespace, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	added := notKeyword(have)
	if len(added) == 0 {
		return nil, nil
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, name := range added {
		if t, ok := have[name]; ok {
			return nil, fmt.Errorf("search attribute %s exists in namespace %s as %s; the lifecycles need it as Keyword (another system uses this name: use another namespace)",
				name, namespace, t)
		}
		missing[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing}); err != nil {
		var denied *serviceerror.PermissionDenied
		var unimplemented *serviceerror.Unimplemented
		if errors.As(err, &denied) || errors.As(err, &unimplemented) {
			// Temporal Cloud manages search attributes outside the
			// operator service.
			return nil, fmt.Errorf("adding search attributes %v to %s was refused (%w); add them as Keyword with your server's administration tool (on Temporal Cloud: its UI or tcld), then run setup again",
				added, namespace, err)
		}
		return nil, fmt.Errorf("adding search attributes %v to %s: %w", added, namespace, err)
	}
	// The frontends learn new attributes when they next refresh their
	// namespace cache (seconds on a cluster); until then a spawn that sets
	// them is refused ("no mapping defined for search attribute"). Setup is
	// done when a query on every one of them is accepted.
	query := fmt.Sprintf(`%s = ""`, added[0])
	for _, name := range added[1:] {
		query += fmt.Sprintf(` AND %s = ""`, name)
	}
	for {
		_, err := f.temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: query})
		if err == nil {
			return added, nil
		}
		select {
		case <-ctx.Done():
			return added, fmt.Errorf("search attributes %v were added to %s but the server does not accept them yet: %w", added, namespace, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// notKeyword lists, in workflows.SearchAttributeNames order, the search
// attributes the lifecycles need that have is missing or holds as another
// type.
func notKeyword(have map[string]enumspb.IndexedValueType) []string {
	var names []string
	for _, name := range workflows.SearchAttributeNames {
		if have[name] != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
			names = append(names, name)
		}
	}
	return names
}
