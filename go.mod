module github.com/cryo-cr/cryo

go 1.26.8

require (
	github.com/checkpoint-restore/go-criu/v8 v8.4.0
	github.com/google/go-cmp v0.7.0
	golang.org/x/arch v0.33.0
	golang.org/x/sys v0.50.0
	google.golang.org/protobuf v1.36.11
)
