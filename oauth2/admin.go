package oauth2

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

// The admin API of the client registry (see ClientManager).

// clientView is a client as the admin API shows it; the secret appears once, on create.
type clientView struct {
	*Client
	ClientSecret string `json:"client_secret,omitempty"`
}

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var in ClientParams
	if err := x.DecodeJSON(r, &in); err != nil {
		return err
	}
	c, secret, err := h.clients.Create(r.Context(), &in)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusCreated, clientView{Client: c, ClientSecret: secret})
	return nil
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	size, err := x.PageSize(r, 100, 500)
	if err != nil {
		return err
	}
	cs, next, err := h.clients.List(r.Context(), size, r.URL.Query().Get("page_token"))
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]any{"clients": cs, "nextPageToken": next})
	return nil
}

func (h *Handler) getClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	c, err := h.clients.Get(r.Context(), ps.ByName("id"))
	return x.Reply(w, http.StatusOK, c, err)
}

func (h *Handler) updateClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	var in ClientParams
	if err := x.DecodeJSON(r, &in); err != nil {
		return err
	}
	c, secret, err := h.clients.Update(r.Context(), ps.ByName("id"), &in)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, clientView{Client: c, ClientSecret: secret})
	return nil
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	if err := h.clients.Delete(r.Context(), ps.ByName("id")); err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
	return nil
}
