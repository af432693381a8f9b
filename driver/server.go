package driver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/cors"
	"golang.org/x/sync/errgroup"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// PublicHandler is the public router behind the middleware stack, applied once here.
func (r *Registry) PublicHandler() http.Handler {
	trusted, _ := x.ParsePrefixes(r.cfg.Serve.Public.TrustedProxies)
	var h http.Handler = r.public
	if c := r.cfg.Serve.Public.CORS; c.Enabled {
		h = cors.New(cors.Options{
			AllowedOrigins:   c.AllowedOrigins,
			AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowedHeaders:   []string{"Authorization", "Content-Type", "X-Request-Id"},
			ExposedHeaders:   []string{"X-Request-Id", "Retry-After"},
			AllowCredentials: true,
			MaxAge:           600,
		}).Handler(h)
	}
	return x.Chain(h,
		x.WithRequestID,
		x.SecurityHeaders,
		x.WithClientIP(trusted),
		audit.WithUserAgent,
		x.AccessLog("public", r.logger, r.metrics),
		x.Recover,
		x.LimitBody,
		r.limiter.Middleware(ratelimit.RuleIP, func(req *http.Request) string { return x.ClientNetwork(x.ClientIPFromContext(req.Context())) }),
	)
}

// AdminHandler is the admin router behind its middleware stack, API keys included.
func (r *Registry) AdminHandler() http.Handler {
	return x.Chain(r.admin,
		x.WithRequestID,
		x.SecurityHeaders,
		x.WithClientIP(nil),
		audit.WithUserAgent,
		x.AccessLog("admin", r.logger, r.metrics),
		x.Recover,
		x.LimitBody,
		r.requireAPIKey,
		r.requireAdminHost,
	)
}

// requireAdminHost answers 403 to an admin request without API keys whose Host is not
// this machine's: a web page that rebinds its DNS name to 127.0.0.1 sends its own name.
func (r *Registry) requireAdminHost(next http.Handler) http.Handler {
	if len(r.cfg.Serve.Admin.APIKeys) > 0 {
		return next
	}
	allowed := r.cfg.Serve.Admin.AllowedHosts
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !x.AdminHostAllowed(req.Host, allowed) {
			r.audit.Log(req.Context(), audit.Event{Type: audit.TypeAdminAuthFailure, Result: audit.ResultFailure,
				Reason: "foreign Host header", Metadata: map[string]any{"path": req.URL.Path, "host": x.Truncate(req.Host, 100)}})
			x.WriteError(w, req, x.ErrForbidden.WithMessage("The admin API answers only for this machine's host names (serve.admin.allowed_hosts)."))
			return
		}
		next.ServeHTTP(w, req)
	})
}

// requireAPIKey enforces serve.admin.api_keys when set: every admin request must carry
// one of them as a bearer token. Keys are compared as hashes in constant time.
func (r *Registry) requireAPIKey(next http.Handler) http.Handler {
	keys := r.cfg.Serve.Admin.APIKeys
	if len(keys) == 0 {
		return next
	}
	sums := make([][32]byte, len(keys))
	for i, k := range keys {
		sums[i] = sha256.Sum256([]byte(k))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got := sha256.Sum256([]byte(session.BearerToken(req)))
		ok := 0
		for _, s := range sums {
			ok |= subtle.ConstantTimeCompare(got[:], s[:])
		}
		if ok != 1 {
			r.audit.Log(req.Context(), audit.Event{Type: audit.TypeAdminAuthFailure, Result: audit.ResultFailure,
				Metadata: map[string]any{"path": req.URL.Path}})
			x.WriteError(w, req, x.ErrUnauthorized.WithMessage("A valid admin API key is required: Authorization: Bearer <key>."))
			return
		}
		next.ServeHTTP(w, req)
	})
}

// The servers' read and write timeouts (variables so that tests can shorten them before
// a server starts). A confirmation's event stream lifts both for itself through
// http.ResponseController: it writes for as long as the confirmation is pending.
var (
	ReadTimeout  = 30 * time.Second
	WriteTimeout = 60 * time.Second
)

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve runs both servers on the given listeners until ctx ends, then shuts them down
// gracefully: in-flight requests finish (up to 30 s), then the audit queue is flushed.
func (r *Registry) Serve(ctx context.Context, publicLn, adminLn net.Listener) error {
	pub, adm := newServer(r.PublicHandler()), newServer(r.AdminHandler())
	// Event streams never finish by themselves: end them when shutdown begins, or they
	// would hold it until its deadline.
	pub.RegisterOnShutdown(r.confirm.Shutdown)
	g, gctx := errgroup.WithContext(ctx)
	serve := func(name string, s *http.Server, ln net.Listener) {
		g.Go(func() error {
			r.logger.Info("listening", "server", name, "addr", ln.Addr().String())
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s server: %w", name, err)
			}
			return nil
		})
	}
	serve("public", pub, publicLn)
	serve("admin", adm, adminLn)
	g.Go(func() error {
		r.janitor.Run(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r.logger.Info("shutting down")
		e1, e2 := pub.Shutdown(sctx), adm.Shutdown(sctx)
		return errors.Join(e1, e2)
	})
	err := g.Wait()
	r.audit.Flush()
	return err
}

// ListenAndServe opens the configured listeners and serves until ctx ends.
func (r *Registry) ListenAndServe(ctx context.Context) error {
	pl, err := net.Listen("tcp", r.cfg.PublicAddr())
	if err != nil {
		return fmt.Errorf("public listener: %w", err)
	}
	al, err := net.Listen("tcp", r.cfg.AdminAddr())
	if err != nil {
		pl.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	return r.Serve(ctx, pl, al)
}
