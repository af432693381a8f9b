package sql

import (
	"bytes"
	"context"
	stdsql "database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
)

const auditColumns = "id, type, user_id, device_id, ip, user_agent, result, reason, metadata, created_at"

// auditInsertChunk bounds the rows of one INSERT statement: 10 placeholders per row keeps
// a statement far below SQLite's and PostgreSQL's bind-parameter limits.
const auditInsertChunk = 100

// auditDefaultLimit applies when a Filter asks for no limit.
const auditDefaultLimit = 100

type auditRow struct {
	ID        string            `db:"id"`
	Type      string            `db:"type"`
	UserID    stdsql.NullInt64  `db:"user_id"`
	DeviceID  stdsql.NullString `db:"device_id"`
	IP        string            `db:"ip"`
	UserAgent string            `db:"user_agent"`
	Result    string            `db:"result"`
	Reason    stdsql.NullString `db:"reason"`
	Metadata  string            `db:"metadata"`
	CreatedAt time.Time         `db:"created_at"`
}

// InsertAuditEvents stores events in one transaction, in multi-row INSERTs; inside the
// transaction ctx carries it joins it (the event of a change commits with it). Events
// without an id or time get a fresh UUIDv7 and the current time; metadata is stored as
// JSON text ({} when empty).
func (p *Persister) InsertAuditEvents(ctx context.Context, events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	return p.Transaction(ctx, func(ctx context.Context) error {
		for start := 0; start < len(events); start += auditInsertChunk {
			end := min(start+auditInsertChunk, len(events))
			if err := p.insertAuditChunk(ctx, events[start:end]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *Persister) insertAuditChunk(ctx context.Context, events []audit.Event) error {
	var q strings.Builder
	// No answer to wait for: on PostgreSQL it goes out with the next statement.
	q.WriteString(p.deferrable("INSERT INTO audit_events (" + auditColumns + ") VALUES "))
	args := make([]any, 0, len(events)*10)
	for i, e := range events {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		row, err := auditArgs(e)
		if err != nil {
			return err
		}
		args = append(args, row...)
	}
	// One statement per row count (at most auditInsertChunk), prepared once.
	if _, err := p.execPrepared(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("insert audit events: %w", err)
	}
	return nil
}

func auditArgs(e audit.Event) ([]any, error) {
	id := e.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		id = u.String()
	}
	created := dbTime(e.CreatedAt)
	if e.CreatedAt.IsZero() {
		created = now()
	}
	meta := []byte("{}")
	if len(e.Metadata) > 0 {
		b, err := json.Marshal(e.Metadata)
		if err != nil {
			return nil, fmt.Errorf("audit event %s: metadata: %w", id, err)
		}
		meta = b
	}
	result := e.Result
	if result == "" {
		result = audit.ResultSuccess
	}
	var userID, deviceID, reason any
	if e.UserID != nil {
		userID = *e.UserID
	}
	if e.DeviceID != nil {
		deviceID = *e.DeviceID
	}
	if e.Reason != "" {
		reason = e.Reason
	}
	return []any{id, e.Type, userID, deviceID, e.IP, e.UserAgent, result, reason, string(meta), created}, nil
}

// ListAuditEvents returns events newest first (ids are UUIDv7, so id order is time
// order). Filters combine with AND:
//   - UserID: events of that user;
//   - Type: exact match, except that a value ending in ".*" matches every type that
//     starts with the part before the "*" ("admin.*" matches "admin.identity.create");
//   - Since: created_at at or after that time (compared at whole seconds, as stored);
//   - BeforeID: only events older than that id (continues a listing);
//   - Limit: at most that many events (100 when zero or negative).
func (p *Persister) ListAuditEvents(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	var (
		where []string
		args  []any
	)
	if f.UserID != nil {
		where = append(where, "user_id = ?")
		args = append(args, *f.UserID)
	}
	if f.Type != "" {
		if prefix, ok := strings.CutSuffix(f.Type, "*"); ok && strings.HasSuffix(prefix, ".") {
			where = append(where, `type LIKE ? ESCAPE '\'`)
			args = append(args, escapeLike(prefix)+"%")
		} else {
			where = append(where, "type = ?")
			args = append(args, f.Type)
		}
	}
	if f.Since != nil {
		where = append(where, "created_at >= ?")
		args = append(args, dbTime(*f.Since))
	}
	if f.BeforeID != "" {
		where = append(where, "id < ?")
		args = append(args, f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = auditDefaultLimit
	}
	q := "SELECT " + auditColumns + " FROM audit_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", limit)

	var rows []auditRow
	if err := p.Connection(ctx).RawQuery(q, args...).All(&rows); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	out := make([]audit.Event, 0, len(rows))
	for _, r := range rows {
		e, err := r.event()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (r auditRow) event() (audit.Event, error) {
	e := audit.Event{
		ID:        r.ID,
		Type:      r.Type,
		IP:        r.IP,
		UserAgent: r.UserAgent,
		Result:    r.Result,
		Reason:    r.Reason.String,
		CreatedAt: r.CreatedAt.UTC(),
		Metadata:  map[string]any{},
	}
	if r.UserID.Valid {
		e.UserID = audit.Int64(r.UserID.Int64)
	}
	if r.DeviceID.Valid {
		d := r.DeviceID.String
		e.DeviceID = &d
	}
	if r.Metadata != "" {
		// UseNumber keeps integers (user ids, counts) exact instead of turning them into floats.
		dec := json.NewDecoder(bytes.NewReader([]byte(r.Metadata)))
		dec.UseNumber()
		if err := dec.Decode(&e.Metadata); err != nil {
			return audit.Event{}, fmt.Errorf("audit event %s: metadata: %w", r.ID, err)
		}
		if e.Metadata == nil { // stored "null"
			e.Metadata = map[string]any{}
		}
	}
	return e, nil
}

// escapeLike escapes LIKE wildcards (and the escape character) so that s matches literally.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
