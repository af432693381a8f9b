// Package janitor deletes what expired and nobody will ask for again: challenges,
// OAuth2 hand-offs, WebAuthn ceremonies, pending logins and tokens. Without it, every
// abandoned request (an unauthenticated /oauth2/auth, say) would stay in the database
// forever. It deletes in small batches so that it never holds SQLite's one writer for
// long, and counts what it deleted per table.
package janitor

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Table is one kind of expiring row and how long past its expiry it is kept.
type Table struct {
	Name string
	// Grace keeps rows past their expiry: a rotated refresh token must still be found
	// when it is replayed shortly after, so that reuse detection can end its family.
	Grace time.Duration
}

// Tables are the tables the janitor cleans (API.md §8 janitor.interval).
var Tables = []Table{
	{Name: "device_challenges"},
	{Name: "webauthn_sessions"},
	{Name: "login_flows"},
	{Name: "oauth2_flows"},
	{Name: "oauth2_code", Grace: time.Hour},
	{Name: "oauth2_oidc", Grace: time.Hour},
	{Name: "oauth2_pkce", Grace: time.Hour},
	{Name: "oauth2_access", Grace: time.Hour},
	{Name: "oauth2_refresh", Grace: time.Hour},
	{Name: "oauth2_ciba_requests", Grace: time.Hour},
	{Name: "login_sessions"},
}

// Persister deletes at most limit rows of table that expired before t.
type Persister interface {
	DeleteExpired(ctx context.Context, table string, before time.Time, limit int) (int64, error)
}

// Janitor runs passes every interval.
type Janitor struct {
	p        Persister
	interval time.Duration
	// Batch is how many rows one statement deletes; Pause is the writer's breather
	// between two statements.
	Batch   int
	Pause   time.Duration
	logger  *slog.Logger
	deleted *prometheus.CounterVec
	// OnBatch, when set, is told how long each delete statement took (tests).
	OnBatch func(table string, n int64, took time.Duration)
}

// New builds a janitor and registers pvauth_janitor_deleted_total{table} with reg.
func New(p Persister, interval time.Duration, logger *slog.Logger, reg prometheus.Registerer) *Janitor {
	j := &Janitor{p: p, interval: interval, Batch: 100, Pause: 5 * time.Millisecond, logger: logger,
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pvauth_janitor_deleted_total",
			Help: "Expired rows deleted by the janitor, by table.",
		}, []string{"table"})}
	for _, t := range Tables {
		j.deleted.WithLabelValues(t.Name)
	}
	if reg != nil {
		reg.MustRegister(j.deleted)
	}
	return j
}

// Run passes every interval until ctx ends; the first pass comes one interval in.
func (j *Janitor) Run(ctx context.Context) {
	if j.interval <= 0 {
		return
	}
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := j.Pass(ctx, time.Now()); err != nil && ctx.Err() == nil {
				j.logger.Warn("janitor pass failed; the next one retries", "error", err)
			}
		}
	}
}

// Pass deletes, table by table, every row that expired (plus its grace) before now, a
// batch at a time; it returns what it deleted per table.
func (j *Janitor) Pass(ctx context.Context, now time.Time) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range Tables {
		for {
			start := time.Now()
			n, err := j.p.DeleteExpired(ctx, t.Name, now.Add(-t.Grace), j.Batch)
			if j.OnBatch != nil {
				j.OnBatch(t.Name, n, time.Since(start))
			}
			if err != nil {
				return out, err
			}
			if n > 0 {
				out[t.Name] += n
				j.deleted.WithLabelValues(t.Name).Add(float64(n))
			}
			if n < int64(j.Batch) {
				break
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(j.Pause):
			}
		}
	}
	if len(out) > 0 {
		j.logger.Debug("janitor pass", "deleted", out)
	}
	return out, nil
}
