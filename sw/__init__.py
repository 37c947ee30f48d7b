"""Host software: data sets, training, CLI, drivers, reports."""
