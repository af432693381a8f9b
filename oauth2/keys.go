package oauth2

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// The signing keys: the public JWKS, and their listing and rotation on the admin port.

func (h *Handler) jwks(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	keys := h.provider().Keys()
	// Re-read the set, so that a key rotated through another replica is listed here from
	// the moment its rotation answered; without the database, the set as last read.
	if err := keys.Refresh(r.Context()); err != nil {
		slog.WarnContext(r.Context(), "jwks: signing keys not re-read; serving the set in memory", "error", err)
	}
	// Public keys may be cached briefly; rotation publishes a key before it signs.
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Del("Pragma")
	x.WriteJSON(w, http.StatusOK, keys.JWKS())
}

type keyView struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	State     string     `json:"state"`
	PublicKey string     `json:"publicKey"`
	CreatedAt time.Time  `json:"createdAt"`
	RetiredAt *time.Time `json:"retiredAt"`
}

func keyViews(keys []*provider.Key) []keyView {
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView{KID: k.KID, Alg: k.Alg, State: k.State, PublicKey: provider.PublicKeyPEM(k), CreatedAt: k.CreatedAt.Truncate(time.Second), RetiredAt: k.RetiredAt})
	}
	return out
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	keys := h.provider().Keys()
	if err := keys.Refresh(r.Context()); err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]any{"keys": keyViews(keys.Keys())})
	return nil
}

func (h *Handler) rotateKeys(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	keys := h.provider().Keys()
	// The new key, the retirement of the old ones and the event commit together.
	k, err := keys.RotateInTx(r.Context(), func(ctx context.Context, k *provider.Key) error {
		return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypeKeyRotate, Metadata: map[string]any{"kid": k.KID}})
	})
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]any{"active": keyViews([]*provider.Key{k})[0], "keys": keyViews(keys.Keys())})
	return nil
}
