package sql

import stdsql "database/sql"

var errSQLNoRows = stdsql.ErrNoRows
