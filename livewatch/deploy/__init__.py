"""Deployment: `livewatch gen-templates`, `deploy` and `destroy` (a built-in plugin, commands.py).

- `stacks`: create-or-update / delete one CloudFormation stack, waiting with progress;
- `rollout`: the deploy plan: checks, uploads, stacks in dependency order, the summary;
- `teardown`: stop the channel, empty the buckets, delete the stacks in reverse order;
- `uploads`: the model package and demo video in the artifact bucket, the image check;
- `image`: `deploy --build-image`: build the daemon's image, ECR login and repository, push, tag;
- `session`: the boto3 session (standard credential chain, AWS_ENDPOINT_URL) and AWS errors as
  one-line messages.
The templates themselves are in the top-level `templates_gen` package.
"""
