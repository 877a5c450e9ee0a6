"""The model zoo's architecture names, importable without torch (config checks run in Snakemake's start-up and
in the aggregate job, which need the names but not the models). ``soteacher.teacher_side.models`` refuses to
load when its registry and this list differ."""

ARCHITECTURES = (
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "ResNet18", "ResNet34", "ResNet50",
    "ResNet18_imagenet", "ResNet34_imagenet", "ResNet50_imagenet",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "MobileNetV2", "ShuffleNetV1", "ShuffleNetV2",
)
