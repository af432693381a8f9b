package audit

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

// RouteAdminEvents lists audit events on the admin port.
const RouteAdminEvents = "/admin/audit-events"

// Page sizes of the listing.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	AuditPersister() Persister
}

// Handler serves the admin listing of audit events.
type Handler struct {
	d PersisterProvider
}

// NewHandler returns a Handler reading events through d.
func NewHandler(d PersisterProvider) *Handler { return &Handler{d: d} }

// RegisterAdminRoutes registers GET /admin/audit-events.
func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminEvents, x.Handle(h.list))
}

// ListResponse is the data of GET /admin/audit-events. NextPageToken is empty on the
// last page; otherwise passing it as page_token (with the same filters) continues.
type ListResponse struct {
	Events        []Event `json:"events"`
	NextPageToken string  `json:"nextPageToken"`
}

// list: GET /admin/audit-events?userId=&type=&since=&page_token=&page_size=
func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	f, err := ParseListQuery(r)
	if err != nil {
		return err
	}
	page, err := ListPage(r.Context(), h.d.AuditPersister(), f)
	return x.Reply(w, http.StatusOK, page, err)
}

// ListPage reads the page of up to f.Limit events that f selects.
func ListPage(ctx context.Context, p Persister, f Filter) (ListResponse, error) {
	pageSize := f.Limit
	f.Limit = pageSize + 1 // one more tells whether another page follows
	events, err := p.ListAuditEvents(ctx, f)
	if err != nil {
		return ListResponse{}, err
	}
	resp := ListResponse{Events: events}
	if len(events) > pageSize {
		resp.Events = events[:pageSize]
		resp.NextPageToken = EncodePageToken(resp.Events[pageSize-1].ID)
	}
	if resp.Events == nil {
		resp.Events = []Event{}
	}
	return resp, nil
}

// ParseListQuery reads the listing's query parameters into a Filter whose Limit is the
// page size. Every bad value is a 400 naming its parameter.
func ParseListQuery(r *http.Request) (Filter, error) {
	q := r.URL.Query()
	var f Filter
	if s := q.Get("userId"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 {
			return Filter{}, x.ErrBadRequest.WithMessage("Query parameter 'userId' must be a positive integer.")
		}
		f.UserID = &id
	}
	if s := q.Get("type"); s != "" {
		if len(s) > maxType {
			return Filter{}, x.ErrBadRequest.WithMessagef("Query parameter 'type' must be at most %d characters.", maxType)
		}
		f.Type = s
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Filter{}, x.ErrBadRequest.WithMessage("Query parameter 'since' must be an RFC 3339 time, such as 2025-08-20T14:30:00Z.")
		}
		t = t.UTC()
		f.Since = &t
	}
	if s := q.Get("page_token"); s != "" {
		id, err := DecodePageToken(s)
		if err != nil {
			return Filter{}, err
		}
		f.BeforeID = id
	}
	n, err := x.PageSize(r, DefaultPageSize, MaxPageSize)
	if err != nil {
		return Filter{}, err
	}
	f.Limit = n
	return f, nil
}

// EncodePageToken makes the opaque page token that continues a listing after id.
func EncodePageToken(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// DecodePageToken returns the event id inside a page token; anything that is not a token
// this server made is a 400.
func DecodePageToken(tok string) (string, error) {
	bad := x.ErrBadRequest.WithMessage("Query parameter 'page_token' is invalid.")
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		return "", bad
	}
	id, err := uuid.Parse(string(b))
	if err != nil || len(b) != 36 {
		return "", bad
	}
	return id.String(), nil
}
