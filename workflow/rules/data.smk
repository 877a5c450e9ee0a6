rule prepare_data:
    output:
        directory(jobs.DATA_DIR),
    params:
        spec=lambda w: json.dumps({"data": config["data"]}, sort_keys=True),
    log:
        "logs/prepare_data/{dataset}.log",
    shell:
        "python -m soteacher prepare-data --spec {params.spec:q} > {log:q} 2>&1"
