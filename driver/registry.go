// Package driver builds every dependency once (the Registry), wires the handlers to the
// public and admin routers, and runs both servers.
package driver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ory/fosite/compose"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pvpipe/pvauth/audit"
	loginui "github.com/pvpipe/pvauth/contrib/login-ui"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/janitor"
	"github.com/pvpipe/pvauth/metrics"
	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/schema"
	"github.com/pvpipe/pvauth/selfservice/biometric"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/selfservice/passkey"
	"github.com/pvpipe/pvauth/selfservice/password"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Registry holds every dependency, built once in New. Handlers receive it through the
// narrow interfaces they declare.
type Registry struct {
	cfg        *config.Config
	logger     *slog.Logger
	persister  *sqlp.Persister
	box        *secretbox.Box
	hasher     *identity.Hasher
	identities *identity.Manager
	tokens     *session.Tokens
	provider   *provider.Provider
	clients    *oauth2.ClientStore
	audit      *audit.Logger
	limiter    *ratelimit.Limiter
	metrics    *metrics.Metrics
	push       push.Sender
	janitor    *janitor.Janitor
	redis      *ratelimit.RedisStore
	notifier   *devicekey.Notifier
	confirm    *confirmation.Service

	public *x.PublicRouter
	admin  *x.AdminRouter
}

// Options tune New.
type Options struct {
	// Migrate applies migrations on start (--dev, dsn memory, tests).
	Migrate bool
	Logger  *slog.Logger
	// RateLimitStore replaces the in-memory counter store.
	RateLimitStore ratelimit.Store
	// PushSender replaces the sender push.fcm configures.
	PushSender push.Sender
}

// New builds the registry: opens and checks the database, loads keys, composes handlers.
func New(ctx context.Context, cfg *config.Config, o Options) (*Registry, error) {
	r := &Registry{cfg: cfg, logger: o.Logger}
	if r.logger == nil {
		r.logger = NewLogger(cfg)
	}
	p, err := openDatabase(ctx, cfg, o.Migrate || cfg.DSN == "memory")
	if err != nil {
		return nil, err
	}
	r.persister = p
	if err := r.build(ctx, o); err != nil {
		p.Close()
		return nil, err
	}
	return r, nil
}

// build composes everything on the open database, in dependency order.
func (r *Registry) build(ctx context.Context, o Options) error {
	if err := r.buildCrypto(); err != nil {
		return err
	}
	pw, err := r.buildTokens(ctx)
	if err != nil {
		return err
	}
	if err := r.buildRateLimiting(ctx, o.RateLimitStore); err != nil {
		return err
	}
	if err := r.buildPush(ctx, o.PushSender); err != nil {
		return err
	}
	r.public, r.admin = x.NewPublicRouter(), x.NewAdminRouter()
	if err := r.registerRoutes(pw); err != nil {
		return fmt.Errorf("webauthn: %w", err)
	}
	return nil
}

// openDatabase opens the database and migrates it (migrate) or checks that it is
// migrated. The persister is closed when it fails.
func openDatabase(ctx context.Context, cfg *config.Config, migrate bool) (*sqlp.Persister, error) {
	p, err := sqlp.New(ctx, resolveDSN(cfg))
	if err != nil {
		return nil, err
	}
	if err := checkMigrations(ctx, p, migrate); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func checkMigrations(ctx context.Context, p *sqlp.Persister, migrate bool) error {
	if migrate {
		if err := p.MigrateUp(ctx); err != nil {
			return fmt.Errorf("migrating the database: %w", err)
		}
		return nil
	}
	n, err := p.PendingMigrations(ctx)
	if err != nil {
		return fmt.Errorf("checking migrations: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("the database is not migrated (%d pending migrations): run `pvauth migrate sql -e --yes` first, or start with --dev", n)
	}
	return nil
}

// buildCrypto builds the secrets cipher, the password hasher and the identity manager.
func (r *Registry) buildCrypto() error {
	var err error
	if r.box, err = secretbox.New(r.cfg.Secrets.Cipher); err != nil {
		return fmt.Errorf("secrets.cipher: %w", err)
	}
	if r.hasher, err = identity.NewHasher(r.cfg.Hashers.Argon2); err != nil {
		return fmt.Errorf("hashers.argon2: %w", err)
	}
	traits, err := schema.IdentityTraits()
	if err != nil {
		return err
	}
	r.identities = identity.NewManager(r.persister, r.hasher, traits)
	return nil
}

// buildTokens loads the signing keys and builds the OAuth2 provider, the audit log and
// the token service; it returns the password handler, whose pending check Tokens uses.
func (r *Registry) buildTokens(ctx context.Context) (*password.Handler, error) {
	cfg, p := r.cfg, r.persister
	// A retired key verifies as long as anything it signed may live: access and ID tokens,
	// and confirmation receipts (a replica re-signs a receipt only when it has none).
	keys := provider.NewKeyManager(p, r.box, cfg.Tokens.Algorithm, func() time.Duration {
		return max(cfg.TTL.AccessToken, cfg.TTL.ConfirmationReceipt)
	})
	if err := keys.Init(ctx); err != nil {
		return nil, err
	}
	r.clients = oauth2.NewClientStore(p)
	r.provider = provider.New(cfg, provider.Deps{Persister: p, Keys: keys, Clients: r.clients,
		SecretHasher: oauth2.NewSecretHasher(cfg.Secrets.Default), Grants: []compose.Factory{oauth2.CIBAGrantFactory(r)}})
	r.audit = audit.NewLogger(p)
	pw := password.NewHandler(r)
	r.tokens = session.NewTokens(cfg, r.provider, p, session.TokenHooks{
		SubjectCheck:    r.subjectCheck,
		PendingCheck:    pw.PendingCheck,
		OnStepUpRefused: r.auditStepUpRefused,
	})
	return pw, nil
}

// auditStepUpRefused logs an enrolment call refused for an old login.
func (r *Registry) auditStepUpRefused(ctx context.Context, pr *session.Principal, path string) {
	ev := audit.Event{Type: audit.TypeStepUpRequired, UserID: audit.Int64(pr.IdentityID), Result: audit.ResultFailure,
		Reason: "login older than security.step_up.max_age", Metadata: map[string]any{"path": path, "sessionId": pr.SessionID}}
	if pr.DeviceID != "" {
		did := pr.DeviceID
		ev.DeviceID = &did
	}
	r.audit.Log(ctx, ev)
}

// buildRateLimiting builds the limiter on store (nil: the one ratelimit.store names),
// the metrics and the janitor, and hooks the audit log to the metrics.
func (r *Registry) buildRateLimiting(ctx context.Context, store ratelimit.Store) error {
	if store == nil {
		var err error
		if store, err = r.rateLimitStore(ctx); err != nil {
			return err
		}
	}
	rules := map[string]ratelimit.Rule{}
	for name, rule := range r.cfg.RateLimit.Rules {
		rules[name] = ratelimit.Rule{Limit: rule.Limit, Window: rule.Window}
	}
	r.limiter = ratelimit.New(r.cfg.RateLimit.Enabled, rules, store)
	r.metrics = metrics.New()
	r.limiter.OnStoreError(r.metrics.RateLimitStoreError)
	r.janitor = janitor.New(r.persister, r.cfg.Janitor.Interval, r.logger, r.metrics.Registry())
	registerDBMetrics(r.metrics.Registry(), r.persister)
	r.audit.OnDrop(r.metrics.AuditDropped)
	r.audit.OnLog(r.observeEvent)
	return nil
}

// buildPush builds the push sender (sender, or the one push.fcm configures), the device
// notifier and the confirmation service.
func (r *Registry) buildPush(ctx context.Context, sender push.Sender) error {
	if sender != nil {
		r.push = sender
	} else {
		var err error
		if r.push, err = push.New(ctx, r.cfg.Push.FCM); err != nil {
			return err
		}
	}
	r.notifier = devicekey.NewNotifier(r.persister, r.box, r.push, r.audit)
	r.confirm = confirmation.NewService(r)
	return nil
}

func (r *Registry) registerRoutes(pw *password.Handler) error {
	health := &healthHandler{ping: r.persister.Ping}
	health.RegisterPublicRoutes(r.public)
	health.RegisterAdminRoutes(r.admin)
	pw.RegisterPublicRoutes(r.public)
	pw.RegisterAdminRoutes(r.admin)
	session.NewAccountHandler(r).RegisterPublicRoutes(r.public)
	session.NewHandler(r).RegisterAdminRoutes(r.admin)
	identity.NewHandler(r).RegisterAdminRoutes(r.admin)
	bio := biometric.NewHandler(r)
	bio.RegisterPublicRoutes(r.public)
	bio.RegisterAdminRoutes(r.admin)
	pk, err := passkey.NewHandler(r)
	if err != nil {
		return err
	}
	pk.RegisterPublicRoutes(r.public)
	pk.RegisterAdminRoutes(r.admin)
	oa := oauth2.NewHandler(r)
	oa.RegisterPublicRoutes(r.public)
	oa.RegisterAdminRoutes(r.admin)
	conf := confirmation.NewHandler(r)
	conf.RegisterPublicRoutes(r.public)
	conf.RegisterAdminRoutes(r.admin)
	audit.NewHandler(r).RegisterAdminRoutes(r.admin)
	r.metrics.RegisterAdminRoutes(r.admin)
	if r.cfg.Dev {
		loginui.Register(r.public)
	}
	return nil
}

// observeEvent turns authentication events into the login and refresh counters.
func (r *Registry) observeEvent(e audit.Event) {
	switch e.Type {
	case audit.TypeLogin:
		r.metrics.ObserveLogin(metrics.MethodPassword, e.Result)
	case audit.TypeOTPVerify, audit.TypeOTPEnroll:
		r.metrics.ObserveLogin(metrics.MethodOTP, e.Result)
	case audit.TypeBiometricLogin:
		r.metrics.ObserveLogin(metrics.MethodBiometric, e.Result)
	case audit.TypePasskey:
		if ev, _ := e.Metadata["event"].(string); ev == "login" {
			r.metrics.ObserveLogin(metrics.MethodPasskey, e.Result)
		}
	case audit.TypeTokenRefresh:
		r.metrics.ObserveRefresh(e.Result)
	case audit.TypeTokenReuse:
		r.metrics.ObserveRefresh(metrics.ResultReuse)
	}
}

// subjectCheck refuses token refreshes for identities that were deleted or disabled.
func (r *Registry) subjectCheck(ctx context.Context, id int64) error {
	i, err := r.persister.GetIdentity(ctx, id)
	if err != nil {
		return err
	}
	if i.State != identity.StateActive {
		return errors.New("identity is disabled")
	}
	return nil
}

// resolveDSN makes a relative sqlite path relative to the config file's directory.
func resolveDSN(cfg *config.Config) string {
	if p := cfg.SQLitePath(); p != "" {
		q := ""
		if i := strings.IndexByte(cfg.DSN, '?'); i >= 0 {
			q = cfg.DSN[i:]
		}
		return "sqlite://" + p + q
	}
	return cfg.DSN
}

// NewLogger builds the slog logger of log.level and log.format.
func NewLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// Accessors: the registry satisfies every handler's dependency interface.

func (r *Registry) Config() *config.Config                     { return r.cfg }
func (r *Registry) Logger() *slog.Logger                       { return r.logger }
func (r *Registry) Persister() *sqlp.Persister                 { return r.persister }
func (r *Registry) Cipher() *secretbox.Box                     { return r.box }
func (r *Registry) IdentityHasher() *identity.Hasher           { return r.hasher }
func (r *Registry) IdentityManager() *identity.Manager         { return r.identities }
func (r *Registry) IdentityPersister() identity.Persister      { return r.persister }
func (r *Registry) LoginFlowPersister() password.FlowPersister { return r.persister }
func (r *Registry) AuditPersister() audit.Persister            { return r.persister }
func (r *Registry) Tokens() *session.Tokens                    { return r.tokens }
func (r *Registry) AuditLogger() *audit.Logger                 { return r.audit }
func (r *Registry) RateLimiter() *ratelimit.Limiter            { return r.limiter }
func (r *Registry) Metrics() *metrics.Metrics                  { return r.metrics }
func (r *Registry) SessionRevoker() identity.SessionRevoker    { return r.tokens }
func (r *Registry) PasskeyPersister() passkey.Persister        { return r.persister }
func (r *Registry) DevicePersister() devicekey.Persister       { return r.persister }
func (r *Registry) BiometricPersister() biometric.Persister    { return r.persister }
func (r *Registry) DeviceNotifier() *devicekey.Notifier        { return r.notifier }
func (r *Registry) ConfirmationService() *confirmation.Service { return r.confirm }
func (r *Registry) ConfirmationPersister() confirmation.Persister {
	return r.persister
}
func (r *Registry) OAuth2Persister() oauth2.Persister      { return r.persister }
func (r *Registry) OAuth2Provider() *provider.Provider     { return r.provider }
func (r *Registry) OAuth2ClientStore() *oauth2.ClientStore { return r.clients }
func (r *Registry) Janitor() *janitor.Janitor              { return r.janitor }
func (r *Registry) PushSender() push.Sender                { return r.push }
func (r *Registry) PublicRouter() *x.PublicRouter          { return r.public }
func (r *Registry) AdminRouter() *x.AdminRouter            { return r.admin }

// Close flushes the audit log and closes the database.
func (r *Registry) Close() {
	r.tokens.Keys().Close() // a key reload in flight reads the database
	r.audit.Close()
	_ = r.persister.Close()
	if r.redis != nil {
		_ = r.redis.Close()
	}
}

// rateLimitStore builds the store ratelimit.store names. A Redis that does not answer
// at start is logged, not fatal: the limiter fails open until Redis is back. With
// ratelimit.enabled false Redis is not contacted.
func (r *Registry) rateLimitStore(ctx context.Context) (ratelimit.Store, error) {
	if r.cfg.RateLimit.Store != config.RateLimitStoreRedis {
		return ratelimit.NewMemoryStore(), nil
	}
	rs, err := ratelimit.NewRedisStore(r.cfg.RateLimit.Redis.URL)
	if err != nil {
		return nil, err
	}
	if !r.cfg.RateLimit.Enabled { // the URL is checked, but nothing will count
		_ = rs.Close()
		return ratelimit.NewMemoryStore(), nil
	}
	if err := rs.Ping(ctx); err != nil {
		r.logger.Warn("ratelimit.store is redis but Redis does not answer; requests are let through until it does", "error", err)
	}
	r.redis = rs
	return rs, nil
}

type healthHandler struct {
	ping func(context.Context) error
}

const (
	RouteHealthAlive = "/health/alive"
	RouteHealthReady = "/health/ready"
)

func (h *healthHandler) RegisterPublicRoutes(r *x.PublicRouter) {
	r.Handler(http.MethodGet, RouteHealthAlive, http.HandlerFunc(h.alive))
	r.Handler(http.MethodGet, RouteHealthReady, http.HandlerFunc(h.ready))
}

func (h *healthHandler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.Handler(http.MethodGet, RouteHealthAlive, http.HandlerFunc(h.alive))
	r.Handler(http.MethodGet, RouteHealthReady, http.HandlerFunc(h.ready))
}

func (h *healthHandler) alive(w http.ResponseWriter, _ *http.Request) {
	x.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *healthHandler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.ping(r.Context()); err != nil {
		x.WriteError(w, r, x.ErrUnavailable.WithMessage("The database is unreachable.").WithCause(err))
		return
	}
	x.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// registerDBMetrics exposes the connection pools' waits and SQLite's group commits: on
// SQLite, time waiting for the one writer is the first sign of saturation.
func registerDBMetrics(reg *prometheus.Registry, p *sqlp.Persister) {
	pool := func(name string, reader bool) {
		stats := func() (sql.DBStats, bool) {
			w, rd, ok := p.PoolStats()
			if reader {
				return rd, ok
			}
			return w, true
		}
		if _, ok := stats(); !ok {
			return
		}
		labels := prometheus.Labels{"pool": name}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pvauth_db_waits_total", ConstLabels: labels,
				Help: "Times a query waited for a free database connection, by pool (writer, reader)."},
				func() float64 { s, _ := stats(); return float64(s.WaitCount) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pvauth_db_wait_seconds_total", ConstLabels: labels,
				Help: "Time spent waiting for a free database connection, by pool (writer, reader)."},
				func() float64 { s, _ := stats(); return s.WaitDuration.Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvauth_db_connections_in_use", ConstLabels: labels,
				Help: "Database connections in use, by pool (writer, reader)."},
				func() float64 { s, _ := stats(); return float64(s.InUse) }),
		)
	}
	pool("writer", false)
	pool("reader", true)
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pvauth_db_group_transactions_total",
			Help: "Write transactions run through SQLite's group commit."},
			func() float64 { txs, _ := p.GroupStats(); return float64(txs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pvauth_db_group_commits_total",
			Help: "Commits of SQLite's group commit (transactions per commit = the ratio of the two)."},
			func() float64 { _, commits := p.GroupStats(); return float64(commits) }),
		// PostgreSQL's dial backoff: held-back attempts rising means the database is away.
		dials("sent", func() float64 { sent, _ := p.DialStats(); return float64(sent) }),
		dials("held_back", func() float64 { _, held := p.DialStats(); return float64(held) }),
	)
}

// dials is pvauth_db_dials_total of one result.
func dials(result string, count func() float64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pvauth_db_dials_total", ConstLabels: prometheus.Labels{"result": result},
		Help: "PostgreSQL connection attempts: sent, or held back by the backoff after a failed one."}, count)
}
