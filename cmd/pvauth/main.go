// Command pvauth is the identity server and its CLI.
package main

import "github.com/pvpipe/pvauth/cmd"

func main() { cmd.Execute() }
