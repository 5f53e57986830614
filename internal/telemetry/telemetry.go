// Package telemetry sets up the worker's OpenTelemetry providers: metrics (the Temporal SDK's and
// the worker's own, served for Prometheus from a registry of their own) and traces (exported over
// OTLP when an endpoint is configured, otherwise not recorded). Its Metrics satisfy the Metrics
// interfaces of the control plane client and of the activities with OpenTelemetry instruments, so
// neither imports an exporter, and this package imports neither.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "agent-connections-worker"

// sdkScope is the instrumentation scope of the Temporal SDK's metrics and spans, as the SDK
// names them when it picks its own meter or tracer.
const sdkScope = "temporal-sdk-go"

// Names of the OpenTelemetry variables the worker reads itself (the exporters read the rest:
// headers, certificates, timeout, compression; the SDK reads OTEL_TRACES_SAMPLER, OTEL_BSP_* and
// OTEL_RESOURCE_ATTRIBUTES).
const (
	EnvServiceName        = "OTEL_SERVICE_NAME"
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter     = "OTEL_TRACES_EXPORTER"
	ProtocolGRPC          = "grpc"
	ProtocolHTTPProtobuf  = "http/protobuf"
	defaultOTLPProtocol   = ProtocolHTTPProtobuf
	tracesExporterOTLP    = "otlp"
	tracesExporterNone    = "none"
)

// TraceConfig says whether and how spans leave the worker.
type TraceConfig struct {
	// Endpoint is the OTLP endpoint in effect (the traces one when set, else the general one);
	// empty turns export off. The exporter itself reads it, and the other OTEL_EXPORTER_OTLP_*
	// settings, from the process environment.
	Endpoint string
	// Protocol is ProtocolGRPC or ProtocolHTTPProtobuf.
	Protocol string
}

// Enabled reports whether spans are exported.
func (c TraceConfig) Enabled() bool { return c.Endpoint != "" }

// SettingError names the variable whose value is wrong. Its message never repeats the value,
// which may carry credentials (a URL with user info).
type SettingError struct {
	Name    string
	Problem string
}

func (e *SettingError) Error() string { return e.Name + ": " + e.Problem }

// LoadTraceConfig reads the standard OpenTelemetry variables that decide tracing:
// OTEL_TRACES_EXPORTER (otlp, the default, or none), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT (an http or https URL; neither set: no export), and
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or
// grpc).
func LoadTraceConfig(lookup func(string) (string, bool)) (TraceConfig, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	switch v := get(EnvTracesExporter); v {
	case "", tracesExporterOTLP:
	case tracesExporterNone:
		return TraceConfig{}, nil
	default:
		return TraceConfig{}, &SettingError{EnvTracesExporter, fmt.Sprintf("%q is not one of %s, %s", v, tracesExporterOTLP, tracesExporterNone)}
	}

	cfg := TraceConfig{Protocol: defaultOTLPProtocol}
	for _, name := range []string{EnvOTLPProtocol, EnvOTLPTracesProtocol} { // the traces one wins
		switch v := get(name); v {
		case "":
		case ProtocolGRPC, ProtocolHTTPProtobuf:
			cfg.Protocol = v
		default:
			return TraceConfig{}, &SettingError{name, fmt.Sprintf("%q is not one of %s, %s", v, ProtocolHTTPProtobuf, ProtocolGRPC)}
		}
	}
	for _, name := range []string{EnvOTLPEndpoint, EnvOTLPTracesEndpoint} { // the traces one wins
		v := get(name)
		if v == "" {
			continue
		}
		if err := checkEndpoint(v); err != nil {
			return TraceConfig{}, &SettingError{name, err.Error()}
		}
		cfg.Endpoint = v
	}
	if cfg.Endpoint == "" {
		return TraceConfig{}, nil
	}
	return cfg, nil
}

func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a URL such as http://collector:4318")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must start with http:// or https:// (such as http://collector:4318), got scheme %q", u.Scheme)
	case u.Host == "":
		return errors.New("has no host (such as http://collector:4318)")
	}
	return nil
}

// Options configure New.
type Options struct {
	// ServiceName is service.name; empty means DefaultServiceName.
	ServiceName string
	// ServiceVersion is service.version, the worker's build version.
	ServiceVersion string
	// Metrics turns the MeterProvider and the Prometheus registry on.
	Metrics bool
	// Traces says where spans go; a zero TraceConfig records none.
	Traces TraceConfig
	// SpanExporter, when set, receives the spans synchronously instead of an OTLP exporter
	// (tests use tracetest.InMemoryExporter).
	SpanExporter sdktrace.SpanExporter
	// OnError receives errors of the Temporal SDK's metric instruments; nil ignores them (the
	// SDK's own default would panic).
	OnError func(error)
}

// Telemetry holds the worker's providers. Build it with New and call Shutdown on the way out.
type Telemetry struct {
	meterProvider  *sdkmetric.MeterProvider // nil without metrics
	registry       *prometheus.Registry
	metrics        *Metrics
	tracerProvider trace.TracerProvider
	sdkTP          *sdktrace.TracerProvider // nil when spans are not recorded
	onError        func(error)
}

// New builds the providers. Nothing is exported until a span ends or /metrics is scraped.
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	res, err := newResource(ctx, opts)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{tracerProvider: noop.NewTracerProvider(), onError: opts.OnError}
	if t.onError == nil {
		t.onError = func(error) {}
	}

	if opts.Metrics {
		t.registry = prometheus.NewRegistry()
		t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exporter, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		t.meterProvider = sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(exporter),
			sdkmetric.WithResource(res),
			// The SDK's timers are in seconds; the default buckets are meant for milliseconds.
			sdkmetric.WithView(sdkmetric.NewView(
				sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Scope: instrumentation.Scope{Name: sdkScope}},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: latencyBuckets}},
			)),
		)
		if t.metrics, err = NewMetrics(t.meterProvider); err != nil {
			return nil, err
		}
	}

	var exporter sdktrace.SpanExporter
	switch {
	case opts.SpanExporter != nil:
		t.sdkTP = sdktrace.NewTracerProvider(sdktrace.WithSyncer(opts.SpanExporter), sdktrace.WithResource(res))
	case opts.Traces.Enabled():
		// The exporters read OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS, timeout) themselves.
		if opts.Traces.Protocol == ProtocolGRPC {
			exporter, err = otlptracegrpc.New(ctx)
		} else {
			exporter, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		t.sdkTP = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	}
	if t.sdkTP != nil {
		t.tracerProvider = t.sdkTP
	}
	return t, nil
}

func newResource(ctx context.Context, opts Options) (*resource.Resource, error) {
	name := opts.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(opts.ServiceVersion))
	}
	// Later options win: OTEL_RESOURCE_ATTRIBUTES may add attributes, the worker's own name and
	// version stay.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
		resource.WithAttributes(attrs...),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	// A partial resource (say, an unreadable OTEL_RESOURCE_ATTRIBUTES entry) still names the
	// service; it is better than none.
	return res, nil
}

// Metrics is the worker's own instruments, nil when metrics are off.
func (t *Telemetry) Metrics() *Metrics { return t.metrics }

// TracerProvider is the provider of every span: the SDK's interceptor and the control plane
// client's HTTP spans. It records nothing when tracing is off.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// Tracing reports whether spans are recorded.
func (t *Telemetry) Tracing() bool { return t.sdkTP != nil }

// Handler serves the Prometheus text format of every metric, nil when metrics are off.
func (t *Telemetry) Handler() http.Handler {
	if t.registry == nil {
		return nil
	}
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{Registry: t.registry})
}

// TemporalMetricsHandler reports the Temporal SDK's metrics through the same MeterProvider
// (temporal_* in /metrics); nil when metrics are off, so the client keeps its no-op handler.
func (t *Telemetry) TemporalMetricsHandler() client.MetricsHandler {
	if t.meterProvider == nil {
		return nil
	}
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter: t.meterProvider.Meter(sdkScope),
		// The SDK's counters only grow: export them as Prometheus counters (_total), not gauges.
		UseMonotonicCounters: true,
		OnError:              t.onError,
	})
}

// TracingInterceptor is the Temporal SDK's OpenTelemetry interceptor on this provider: spans for
// workflow and activity starts and runs, carried across Temporal in headers, and the parent of the
// control plane client's HTTP spans.
func (t *Telemetry) TracingInterceptor() (interceptor.Interceptor, error) {
	return temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: t.tracerProvider.Tracer(sdkScope)})
}

// Shutdown flushes the spans still buffered and stops the providers. Call it once, on the way out.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.sdkTP != nil {
		if err := t.sdkTP.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("trace provider: %w", err))
		}
	}
	if t.meterProvider != nil {
		if err := t.meterProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}
