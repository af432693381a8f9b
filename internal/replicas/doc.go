// Package replicas holds the integration tests of API.md §9 across replicas: three
// registries (and, for the SIGKILL test, three `pvauth serve` processes) on one
// PostgreSQL database and one Redis. It has no code of its own.
package replicas
