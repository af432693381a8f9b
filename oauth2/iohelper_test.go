package oauth2_test

import (
	"io"
	"net/http"
	"strings"
)

func ioCopy(b *strings.Builder, r *http.Response) (int64, error) { return io.Copy(b, r.Body) }
