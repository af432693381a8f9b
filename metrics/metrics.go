// Package metrics exposes pvauth's Prometheus metrics on a registry of its own (not the
// global default one), served at GET /metrics on the admin port.
//
// Label values are bounded: routes are registered patterns ("GET /admin/identities/:id",
// or "unmatched"/"not_found"/"method_not_allowed" from x.Route), never raw paths; codes
// are HTTP statuses; login methods and results are constants of the calling packages.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pvpipe/pvauth/x"
)

// Login methods and results for ObserveLogin / ObserveRefresh.
const (
	MethodPassword  = "password"
	MethodOTP       = "otp"
	MethodBiometric = "biometric"
	MethodPasskey   = "passkey"
	MethodOAuth2    = "oauth2"

	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultReuse   = "reuse"
)

// Provider is implemented by the registry.
type Provider interface {
	Metrics() *Metrics
}

// Metrics holds the collectors. A nil *Metrics is valid and records nothing, so that
// packages can be used without metrics (tests, CLI).
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	refreshes    *prometheus.CounterVec
	auditDropped prometheus.Counter
	rlStoreErrs  prometheus.Counter
}

var _ x.Observer = (*Metrics)(nil)

// New creates the collectors on a fresh registry, together with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pvauth_http_requests_total",
			Help: "HTTP requests served, by server (public, admin), route pattern and status code.",
		}, []string{"server", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pvauth_http_request_duration_seconds",
			Help:    "HTTP request latency, by server and route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"server", "route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pvauth_logins_total",
			Help: "Login attempts, by method (password, otp, biometric, passkey, oauth2) and result.",
		}, []string{"method", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pvauth_token_refresh_total",
			Help: "Refresh token uses, by result (success, failure, reuse).",
		}, []string{"result"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pvauth_audit_dropped_total",
			Help: "Audit events dropped because the write queue was full.",
		}),
		rlStoreErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pvauth_ratelimit_store_errors_total",
			Help: "Rate limit store calls that failed (Redis unreachable); the requests were let through.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.logins, m.refreshes, m.auditDropped, m.rlStoreErrs,
	)
	return m
}

// Observe records one served request; it implements x.Observer for x.AccessLog.
func (m *Metrics) Observe(server, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(server, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(server, route).Observe(d.Seconds())
}

// ObserveLogin counts one login attempt.
func (m *Metrics) ObserveLogin(method, result string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(method, result).Inc()
}

// ObserveRefresh counts one refresh-token use.
func (m *Metrics) ObserveRefresh(result string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(result).Inc()
}

// AuditDropped counts one audit event dropped; pass it to audit.Logger.OnDrop.
func (m *Metrics) AuditDropped() {
	if m == nil {
		return
	}
	m.auditDropped.Inc()
}

// RateLimitStoreError counts one failed rate limit store call; pass it to
// ratelimit.Limiter.OnStoreError.
func (m *Metrics) RateLimitStoreError() {
	if m == nil {
		return
	}
	m.rlStoreErrs.Inc()
}

// Registry is the registry the collectors live on (to add collectors of other packages).
func (m *Metrics) Registry() *prometheus.Registry {
	return m.reg
}

// Handler serves the registry in the Prometheus text format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RouteMetrics is the admin route of the scrape endpoint.
const RouteMetrics = "/metrics"

// RegisterAdminRoutes serves Handler at GET /metrics on the admin router.
func (m *Metrics) RegisterAdminRoutes(r *x.AdminRouter) {
	r.Handler(http.MethodGet, RouteMetrics, m.Handler())
}
