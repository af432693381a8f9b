package x

import (
	"net/http"
	"strconv"
)

// PageSize reads page_size (default def, at most max); a bad value is a 400.
func PageSize(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("page_size")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, ErrBadRequest.WithMessagef("Query parameter 'page_size' must be an integer from 1 to %d.", max)
	}
	return n, nil
}

// IdentityIDParam parses the ":id" path parameter of the admin identity routes.
func IdentityIDParam(ps interface{ ByName(string) string }) (int64, error) {
	id, err := strconv.ParseInt(ps.ByName("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, ErrBadRequest.WithMessage("Path parameter 'id' must be a positive integer.")
	}
	return id, nil
}
