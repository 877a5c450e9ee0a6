rule prepare_data:
    output:
        directory(layout.DATA_DIR),
    log:
        layout.log("prepare_data", "{data}"),
    params:
        spec=lambda w: json.dumps({"data": config["data"]}, sort_keys=True),
    shell:
        "python -m soteacher prepare-data --spec {params.spec:q} > {log:q} 2>&1"
