package x

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/julienschmidt/httprouter"
)

// Router wraps httprouter so that every route registers its pattern, which the
// metrics and access-log middleware use as a low-cardinality label.
type Router struct {
	r      *httprouter.Router
	routes []RouteInfo
}

// RouteInfo is one registered route: its method and httprouter pattern.
type RouteInfo struct{ Method, Path string }

// PublicRouter serves the public port; AdminRouter the admin port. Distinct types keep a
// handler from registering an admin route on the public port by mistake.
type (
	PublicRouter struct{ *Router }
	AdminRouter  struct{ *Router }
)

func newRouter() *Router {
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		setRoute(req.Context(), "not_found")
		WriteError(w, req, ErrNotFound.WithMessage("No route matches "+req.Method+" "+req.URL.Path+"."))
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		setRoute(req.Context(), "method_not_allowed")
		WriteError(w, req, ErrMethodNotAllowed)
	})
	r.PanicHandler = nil // the Recover middleware handles panics for the whole stack
	return &Router{r: r}
}

// NewPublicRouter returns an empty public router.
func NewPublicRouter() *PublicRouter { return &PublicRouter{newRouter()} }

// NewAdminRouter returns an empty admin router.
func NewAdminRouter() *AdminRouter { return &AdminRouter{newRouter()} }

// Handle registers h for method and path.
func (rt *Router) Handle(method, path string, h httprouter.Handle) {
	rt.routes = append(rt.routes, RouteInfo{Method: method, Path: path})
	rt.r.Handle(method, path, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		setRoute(r.Context(), method+" "+path)
		h(w, r, ps)
	})
}

// Handler registers a plain http.Handler for method and path.
func (rt *Router) Handler(method, path string, h http.Handler) {
	rt.Handle(method, path, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) { h.ServeHTTP(w, r) })
}

func (rt *Router) GET(path string, h httprouter.Handle)    { rt.Handle(http.MethodGet, path, h) }
func (rt *Router) POST(path string, h httprouter.Handle)   { rt.Handle(http.MethodPost, path, h) }
func (rt *Router) PUT(path string, h httprouter.Handle)    { rt.Handle(http.MethodPut, path, h) }
func (rt *Router) PATCH(path string, h httprouter.Handle)  { rt.Handle(http.MethodPatch, path, h) }
func (rt *Router) DELETE(path string, h httprouter.Handle) { rt.Handle(http.MethodDelete, path, h) }

// Lookup reports whether a route exists for method and path (used by the OpenAPI test).
func (rt *Router) Lookup(method, path string) bool {
	h, _, _ := rt.r.Lookup(method, path)
	return h != nil
}

// Routes lists the registered routes in registration order (used by the OpenAPI test).
func (rt *Router) Routes() []RouteInfo { return slices.Clone(rt.routes) }

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.r.ServeHTTP(w, r) }

type routeKey struct{}

// routeHolder is filled in by the matched route so that outer middleware can read it.
type routeHolder struct{ route string }

// WithRouteHolder prepares the request context to learn the matched route pattern.
func WithRouteHolder(ctx context.Context) context.Context {
	return context.WithValue(ctx, routeKey{}, &routeHolder{route: "unmatched"})
}

func setRoute(ctx context.Context, route string) {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		h.route = route
	}
}

// Route returns the matched route pattern ("POST /api/v1/auth/login"), or "unmatched".
func Route(ctx context.Context) string {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		return h.route
	}
	return "unmatched"
}

// Group registers routes under one prefix where httprouter cannot mix a static segment
// with a parameter (".../confirmation/initiate" beside ".../confirmation/:id/verify"):
// a single catch-all route matches the segments itself and dispatches. Patterns are
// relative to prefix ("initiate", ":id/verify"); each is recorded in Routes and used as
// the metrics label like any other route.
func (rt *Router) Group(method, prefix string, routes map[string]httprouter.Handle) {
	type sub struct {
		pattern []string
		full    string
		h       httprouter.Handle
	}
	subs := make([]sub, 0, len(routes))
	for p, h := range routes {
		full := strings.TrimSuffix(prefix, "/") + "/" + p
		subs = append(subs, sub{pattern: strings.Split(p, "/"), full: full, h: h})
		rt.routes = append(rt.routes, RouteInfo{Method: method, Path: full})
	}
	rt.r.Handle(method, strings.TrimSuffix(prefix, "/")+"/*pvauthrest", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		segs := strings.Split(strings.TrimPrefix(ps.ByName("pvauthrest"), "/"), "/")
	next:
		for _, s := range subs {
			if len(s.pattern) != len(segs) {
				continue
			}
			var params httprouter.Params
			for i, p := range s.pattern {
				switch {
				case strings.HasPrefix(p, ":"):
					if segs[i] == "" {
						continue next
					}
					params = append(params, httprouter.Param{Key: p[1:], Value: segs[i]})
				case p != segs[i]:
					continue next
				}
			}
			setRoute(r.Context(), method+" "+s.full)
			s.h(w, r, params)
			return
		}
		rt.r.NotFound.ServeHTTP(w, r)
	})
}
