package oauth2

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// The login and consent hand-off API of the web login UI (see Handoff).

// ErrFreshLoginRequired refuses to accept a login older than the request allows.
var ErrFreshLoginRequired = x.NewError(http.StatusForbidden, "login_required",
	"This sign-in request needs a fresh login (prompt=login, max_age or id_token_hint): sign in again.")

type challengeBody struct {
	LoginChallenge   string   `json:"loginChallenge"`
	ConsentChallenge string   `json:"consentChallenge"`
	GrantScope       []string `json:"grantScope"`
	Remember         bool     `json:"remember"`
}

type redirectResult struct {
	RedirectTo string `json:"redirectTo"`
}

// redirectTo answers where the browser continues.
func redirectTo(w http.ResponseWriter, to string, err error) error {
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, redirectResult{RedirectTo: to})
	return nil
}

func (h *Handler) getLogin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	req, err := h.handoff.Login(r.Context(), r.URL.Query().Get("login_challenge"))
	return x.Reply(w, http.StatusOK, req, err)
}

func (h *Handler) acceptLogin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	to, err := h.handoff.AcceptLogin(r.Context(), session.PrincipalFrom(r.Context()), b.LoginChallenge, b.Remember)
	return redirectTo(w, to, err)
}

func (h *Handler) getConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	req, err := h.handoff.Consent(r.Context(), session.PrincipalFrom(r.Context()), r.URL.Query().Get("consent_challenge"))
	return x.Reply(w, http.StatusOK, req, err)
}

func (h *Handler) acceptConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	to, err := h.handoff.AcceptConsent(r.Context(), session.PrincipalFrom(r.Context()), b.ConsentChallenge, b.GrantScope, b.Remember)
	return redirectTo(w, to, err)
}

func (h *Handler) rejectConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	to, err := h.handoff.RejectConsent(r.Context(), session.PrincipalFrom(r.Context()), b.ConsentChallenge)
	return redirectTo(w, to, err)
}
